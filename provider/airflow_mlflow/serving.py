"""
The serving check: start MLflow's scoring server for a model (or use one that runs), post rows to
``/invocations``, and judge the answers: status, shape against the signature, expected predictions
and latency. No MLflow import here: the hook reads the model's interface, this module speaks HTTP
to the server (``requests``, imported when used); :mod:`airflow_mlflow.scoring_server` owns the
server's process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlflow.exceptions import MLflowInputError

if TYPE_CHECKING:
    from airflow_mlflow.scoring_server import ScoringServer

#: The request bodies MLflow's scoring server accepts for tabular rows.
INPUT_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
#: ColSpec types of a signature, and the JSON values a prediction of that type may be.
_COLUMN_TYPES: dict[str, tuple[type, ...]] = {
    "long": (int,),
    "integer": (int,),
    "double": (int, float),
    "float": (int, float),
    "boolean": (bool,),
    "string": (str,),
}


class ServingFailure(Exception):
    """One check failed: ``what`` names it (``status``, ``rows``, ``schema``, ``latency``, …)."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what
        #: What was measured before the failure (``p50_ms``, ``p95_ms``), for the run and the tags.
        self.measured: dict[str, float] = {}


# -- the rows ---------------------------------------------------------------------------------


def table_from_rows(rows: Any) -> tuple[list[str], list[list[Any]]]:
    """
    ``rows`` as given: a list of records (``[{"a": 1, "b": 2}, …]``) or MLflow's split form
    (``{"columns": [...], "data": [[...], …]}``); returned as columns and data.
    """
    if isinstance(rows, Mapping) and "columns" in rows and "data" in rows:
        columns, data = list(rows["columns"]), [list(r) for r in rows["data"]]
        if any(len(r) != len(columns) for r in data):
            raise MLflowInputError(f"rows: every row of 'data' must have {len(columns)} values ({columns})")
    elif (
        isinstance(rows, Sequence) and not isinstance(rows, str) and all(isinstance(r, Mapping) for r in rows)
    ):
        columns = list(dict.fromkeys(key for row in rows for key in row))
        data = [[row.get(c) for c in columns] for row in rows]
    else:
        raise MLflowInputError(
            f"rows must be a list of records or {{'columns': [...], 'data': [...]}}, got {str(rows)[:200]!r}"
        )
    if not data:
        raise MLflowInputError("rows: at least one row is needed")
    return [str(c) for c in columns], data


def request_body(columns: list[str], data: list[list[Any]], input_format: str) -> dict[str, Any]:
    """The ``/invocations`` body for a table in one of :data:`INPUT_FORMATS`."""
    if input_format == "dataframe_split":
        return {"dataframe_split": {"columns": columns, "data": data}}
    records = [dict(zip(columns, row, strict=True)) for row in data]
    if input_format == "dataframe_records":
        return {"dataframe_records": records}
    if input_format == "instances":
        return {"instances": records}
    if input_format == "inputs":
        return {"inputs": {c: [row[i] for row in data] for i, c in enumerate(columns)}}
    raise MLflowInputError(f"input_format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}")


def stored_body_rows(body: Mapping[str, Any]) -> int | None:
    """How many rows MLflow's stored serving example holds, when its form says."""
    for key in ("dataframe_records", "instances"):
        if isinstance(body.get(key), list):
            return len(body[key])
    split = body.get("dataframe_split")
    if isinstance(split, Mapping) and isinstance(split.get("data"), list):
        return len(split["data"])
    inputs = body.get("inputs")
    if isinstance(inputs, list):
        return len(inputs)
    if isinstance(inputs, Mapping) and inputs and all(isinstance(v, list) for v in inputs.values()):
        return len(next(iter(inputs.values())))
    return None


# -- judging the answers ------------------------------------------------------------------------


def predictions_of(body: Any) -> Any:
    """MLflow's answer is ``{"predictions": …}``; anything else is taken as the predictions."""
    return body["predictions"] if isinstance(body, Mapping) and "predictions" in body else body


def prediction_rows(predictions: Any) -> list[Any]:
    """One prediction per input row: a list as is, a column mapping (``{"c": [...]}``) per row."""
    if isinstance(predictions, list):
        return predictions
    if (
        isinstance(predictions, Mapping)
        and predictions
        and all(isinstance(v, list) for v in predictions.values())
    ):
        length = len(next(iter(predictions.values())))
        return [{k: v[i] for k, v in predictions.items() if i < len(v)} for i in range(length)]
    raise ServingFailure("shape", f"the predictions are neither a list nor columns: {str(predictions)[:200]}")


def check_against_outputs(rows: list[Any], outputs: list[dict[str, Any]] | None) -> None:
    """Each prediction has the signature's columns and types, or its tensor's shape."""
    if not outputs:
        return
    if outputs[0].get("type") == "tensor":
        spec = outputs[0].get("tensor-spec") or {}
        _check_tensor_rows(rows, list(spec.get("shape") or [])[1:], str(spec.get("dtype", "")))
        return
    named = [o for o in outputs if o.get("name")]
    for index, row in enumerate(rows):
        if isinstance(row, Mapping):
            missing = [o["name"] for o in named if o.get("required", True) and o["name"] not in row]
            if missing:
                raise ServingFailure(
                    "schema", f"prediction {index} lacks the signature's outputs {missing}: {row}"
                )
            for spec in named:
                if spec["name"] in row:
                    _check_type(index, row[spec["name"]], spec)
        elif len(outputs) == 1:
            _check_type(index, row, outputs[0])
        else:
            raise ServingFailure(
                "schema", f"prediction {index} is {row!r}, the signature has {len(outputs)} output columns"
            )


def _check_type(index: int, value: Any, spec: Mapping[str, Any]) -> None:
    allowed = _COLUMN_TYPES.get(str(spec.get("type")))
    if value is None or allowed is None:
        return
    if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
        column = f" ({spec['name']})" if spec.get("name") else ""
        raise ServingFailure(
            "schema", f"prediction {index}{column} is {value!r}, the signature says {spec['type']}"
        )


def _check_tensor_rows(rows: list[Any], shape: list[int], dtype: str) -> None:
    for index, row in enumerate(rows):
        if _shape(row) != len(shape) or not _fits(row, shape):
            raise ServingFailure(
                "schema", f"prediction {index} is {str(row)[:100]}, the signature's shape is {shape}"
            )
        kind = (
            int if dtype.startswith(("int", "uint")) else (int, float) if dtype.startswith("float") else None
        )
        if kind is not None and not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in _leaves(row)
        ):
            raise ServingFailure(
                "schema", f"prediction {index} is {str(row)[:100]}, the signature says {dtype}"
            )


def _shape(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        depth, value = depth + 1, value[0] if value else None
    return depth


def _fits(value: Any, shape: list[int]) -> bool:
    if not shape:
        return not isinstance(value, list)
    if not isinstance(value, list) or shape[0] not in (-1, len(value)):
        return False
    return all(_fits(v, shape[1:]) for v in value)


def _leaves(value: Any) -> list[Any]:
    return [leaf for v in value for leaf in _leaves(v)] if isinstance(value, list) else [value]


def check_expected(rows: list[Any], expected: Sequence[Any], tolerance: float) -> None:
    """The predictions equal ``expected``, numbers within ``tolerance`` (absolute)."""
    if len(rows) != len(expected):
        raise ServingFailure("expected", f"{len(rows)} predictions, {len(expected)} expected")
    for index, (got, want) in enumerate(zip(rows, expected, strict=True)):
        if not _close(got, want, tolerance):
            raise ServingFailure(
                "expected", f"prediction {index} is {got!r}, expected {want!r} (tolerance {tolerance})"
            )


def _close(got: Any, want: Any, tolerance: float) -> bool:
    numbers = (int, float)
    if isinstance(got, numbers) and isinstance(want, numbers) and not isinstance(got, bool):
        return math.isclose(got, want, rel_tol=0.0, abs_tol=tolerance)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_close(g, w, tolerance) for g, w in zip(got, want, strict=True))
    if isinstance(got, Mapping) and isinstance(want, Mapping):
        return got.keys() == want.keys() and all(_close(got[k], want[k], tolerance) for k in got)
    return got == want


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def judge(
    base_url: str,
    body: Mapping[str, Any],
    *,
    rows: int | None,
    count: int,
    timeout: float,
    outputs: list[dict[str, Any]] | None,
    expected: Sequence[Any] | None,
    tolerance: float,
    max_p50_ms: float | None,
    max_p95_ms: float | None,
) -> dict[str, Any]:
    """
    Post ``body`` ``count`` times and check the answers: HTTP 200 each time, one prediction per
    input row, the signature's outputs, ``expected`` and the latency bounds. Returns what was
    measured; raises :class:`ServingFailure` on the first check that fails.
    """
    first, latencies = post_invocations(base_url, body, count, timeout)
    measured = {
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p95_ms": round(percentile(latencies, 0.95), 3),
    }
    try:
        predictions = prediction_rows(predictions_of(first))
        if rows is not None and len(predictions) != rows:
            raise ServingFailure("rows", f"{len(predictions)} predictions for {rows} input rows")
        check_against_outputs(predictions, outputs)
        if expected is not None:
            check_expected(predictions, expected, tolerance)
        for name, bound in (("p50_ms", max_p50_ms), ("p95_ms", max_p95_ms)):
            if bound is not None and measured[name] > bound:
                raise ServingFailure(
                    "latency",
                    f"{name[:3]} latency {measured[name]:.2f} ms over {count} requests exceeds {bound:g} ms",
                )
    except ServingFailure as failure:
        failure.measured = measured
        raise
    return {**measured, "requests": count, "rows": len(predictions), "predictions": predictions[:5]}


# -- HTTP -------------------------------------------------------------------------------------


def http_session(base_url: str) -> Any:
    """A ``requests`` session; one to the loopback server this task started ignores proxy variables."""
    import requests

    session = requests.Session()
    session.trust_env = not base_url.startswith("http://127.0.0.1:")
    return session


def wait_for_ping(base_url: str, timeout: float, server: ScoringServer | None = None) -> float:
    """Poll ``/ping`` until it answers 200; seconds waited. Fails when the server exits or time runs out."""
    started = time.monotonic()
    last = "no answer"
    with http_session(base_url) as session:
        while True:
            if server is not None and server.exited():
                raise ServingFailure(
                    "startup",
                    f"the scoring server exited with status {server.returncode()} before answering /ping",
                )
            try:
                answer = session.get(f"{base_url}/ping", timeout=2)
                if answer.status_code == 200:
                    return time.monotonic() - started
                last = f"HTTP {answer.status_code}"
            except OSError as err:  # requests' errors are OSErrors
                last = type(err).__name__
            if time.monotonic() - started > timeout:
                raise ServingFailure(
                    "startup", f"the scoring server did not answer /ping within {timeout:g} s (last: {last})"
                )
            time.sleep(0.2)


def post_invocations(
    base_url: str, body: Mapping[str, Any], count: int, timeout: float
) -> tuple[Any, list[float]]:
    """Post ``body`` ``count`` times: the first answer's JSON and each request's latency (ms)."""
    import requests

    latencies: list[float] = []
    first: Any = None
    with http_session(base_url) as session:
        for _ in range(count):
            started = time.perf_counter()
            try:
                answer = session.post(f"{base_url}/invocations", json=body, timeout=timeout)
            except requests.RequestException as err:
                raise ServingFailure(
                    "request", f"POST /invocations failed: {type(err).__name__}: {err}"
                ) from None
            latencies.append((time.perf_counter() - started) * 1000.0)
            if answer.status_code != 200:
                raise ServingFailure(
                    "status", f"POST /invocations answered HTTP {answer.status_code}: {answer.text[:500]}"
                )
            if first is None:
                try:
                    first = answer.json()
                except ValueError:
                    raise ServingFailure(
                        "status", f"POST /invocations answered no JSON: {answer.text[:200]}"
                    ) from None
    return first, latencies
