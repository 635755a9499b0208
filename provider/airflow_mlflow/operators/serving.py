"""Check that a model version serves before it is promoted: MLflow's scoring server, called for real."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlflow.links.mlflow import MLflowModelVersionLink
from airflow_mlflow.operators.base import MLflowBaseOperator, TrackedRunMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlflow.operators.base import TrackedRun
    from airflow_mlflow.scoring_server import ScoringServer

#: The request body MLflow's scoring server documents first.
DEFAULT_INPUT_FORMAT = "dataframe_split"


def _number(field: str, value: Any, kind: type = float, minimum: float = 0.0) -> Any:
    """A templated number (rendered as text by Jinja), checked; None stays None."""
    if value is None or value == "":
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum or (kind is float and number != number):
        from airflow_mlflow.exceptions import MLflowInputError

        raise MLflowInputError(f"{field} must be a number >= {minimum:g}, got {value!r}")
    return number


def _structured(field: str, value: Any) -> Any:
    """``rows`` / ``expected`` as given, or parsed from JSON text (a template renders to text)."""
    if not isinstance(value, str):
        return value
    import json

    try:
        return json.loads(value)
    except ValueError:
        from airflow_mlflow.exceptions import MLflowInputError

        raise MLflowInputError(f"{field} must be a list (or its JSON), got {value[:200]!r}") from None


class MLflowServingCheckOperator(TrackedRunMixin, MLflowBaseOperator):
    """
    Check that a model version serves: start it with MLflow's own scoring server (``mlflow models
    serve --env-manager local`` on a free loopback port, in a process group this task owns and
    always stops), or call a server that already runs (``endpoint_url``); wait for ``/ping``, post
    rows to ``/invocations`` ``requests`` times, and check:

    * every answer is HTTP 200;
    * one prediction per input row, with the columns and types (or tensor shape) of the model
      signature's outputs, when the model has a signature;
    * the predictions equal ``expected`` within ``tolerance``, when given;
    * the p50 / p95 latency over the requests is within ``max_p50_ms`` / ``max_p95_ms``, when given.

    The rows are the model's stored input example unless ``rows`` are given. The verdict and the
    latencies go onto the version (``airflow.serving.*`` tags) and into the task's MLflow run
    (metrics ``serving_p50_ms`` / ``serving_p95_ms``). A failed check fails the task at once
    (:class:`~airflow_mlflow.exceptions.MLflowServingCheckError`), naming what failed and quoting
    the server's last log lines.

    The scoring server runs in the task's environment (``--env-manager local``): the model's
    libraries must be installed where the task runs.

    :param model_name: registered model (templated)
    :param version: the candidate version, e.g. from the register task's XCom (templated)
    :param endpoint_url: a running scoring server to call instead of starting one, e.g.
        ``http://scoring:8080`` (templated)
    :param rows: input rows, as records (``[{"a": 1.0}, …]``) or ``{"columns": [...], "data":
        [[...]]}``; default: the model's stored input example (templated)
    :param input_format: ``dataframe_split`` (default), ``dataframe_records``, ``instances`` or
        ``inputs`` (templated)
    :param expected: the predictions the rows must give, one per row (templated)
    :param tolerance: absolute tolerance of numeric predictions against ``expected`` (templated)
    :param requests: how many requests to time (default 20) (templated)
    :param max_p95_ms: upper bound of the p95 latency, in milliseconds; None: measured only (templated)
    :param max_p50_ms: upper bound of the p50 latency, in milliseconds (templated)
    :param startup_timeout: seconds the server has to answer ``/ping`` (templated)
    :param request_timeout: seconds each request may take
    :param experiment_name: experiment of the task's run; default: the connection's
        ``experiment_name`` extra, else the DAG id (templated)
    :param nested: nest the task's run under one run per DAG run (default True)
    :param mlflow_conn_id: the ``mlflow`` connection (templated)
    :return: ``{"name", "version", "status", "p50_ms", "p95_ms", "requests", "rows", "endpoint"}``
    """

    template_fields: Sequence[str] = (
        "model_name",
        "version",
        "endpoint_url",
        "rows",
        "input_format",
        "expected",
        "tolerance",
        "requests",
        "max_p95_ms",
        "max_p50_ms",
        "startup_timeout",
        "experiment_name",
        "mlflow_conn_id",
    )
    template_fields_renderers = {"rows": "json", "expected": "json"}
    operator_extra_links = (*TrackedRunMixin.operator_extra_links, MLflowModelVersionLink())

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int,
        endpoint_url: str | None = None,
        rows: Any = None,
        input_format: str = DEFAULT_INPUT_FORMAT,
        expected: Sequence[Any] | None = None,
        tolerance: float | str = 1e-6,
        requests: int | str = 20,
        max_p95_ms: float | str | None = None,
        max_p50_ms: float | str | None = None,
        startup_timeout: float | str = 120,
        request_timeout: float = 30,
        experiment_name: str | None = None,
        nested: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.endpoint_url = endpoint_url
        self.rows = rows
        self.input_format = input_format
        self.expected = expected
        self.tolerance = tolerance
        self.requests = requests
        self.max_p95_ms = max_p95_ms
        self.max_p50_ms = max_p50_ms
        self.startup_timeout = startup_timeout
        self.request_timeout = request_timeout
        self.experiment_name = experiment_name
        self.nested = nested
        #: The scoring server this task started last (stopped when ``execute`` returns or fails).
        self.server: ScoringServer | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlflow.serving import INPUT_FORMATS

        if self.input_format not in INPUT_FORMATS:
            from airflow_mlflow.exceptions import MLflowInputError

            raise MLflowInputError(
                f"input_format must be one of {', '.join(INPUT_FORMATS)}, got {self.input_format!r}"
            )
        settings = {
            "tolerance": _number("tolerance", self.tolerance),
            "count": _number("requests", self.requests, int, 1),
            "max_p95_ms": _number("max_p95_ms", self.max_p95_ms),
            "max_p50_ms": _number("max_p50_ms", self.max_p50_ms),
            "startup_timeout": _number("startup_timeout", self.startup_timeout),
        }
        version = str(self.version)
        from airflow_mlflow.links.mlflow import push_version_link

        push_version_link(context, self.hook, self.model_name, version)
        with self.tracked_run(context) as run, tempfile.TemporaryDirectory(prefix="serving-") as folder:
            return self._check(context, run, version, settings, Path(folder))
        return {}  # unreachable: the check needs MLflow, so it is always tracked

    def _check(
        self, context: Context, run: TrackedRun, version: str, settings: dict[str, Any], folder: Path
    ) -> dict[str, Any]:
        from airflow_mlflow import serving
        from airflow_mlflow.exceptions import MLflowServingCheckError
        from airflow_mlflow.hooks.config import redact
        from airflow_mlflow.scoring_server import ScoringServer

        self.hook.get_model_version(self.model_name, version)  # a missing version fails here, plainly
        model_uri = f"models:/{self.model_name}/{version}"
        interface = self.hook.model_interface(model_uri)
        body, rows = self._body(interface)
        expected = _structured("expected", self.expected)
        endpoint = (self.endpoint_url or "").rstrip("/")
        self.server = None
        try:
            try:
                if not endpoint:
                    self.server = ScoringServer(
                        model_uri, self.hook.serving_env(), folder / "server.log"
                    ).start()
                    endpoint = self.server.url
                    self.log.info("Starting MLflow's scoring server for %s on %s", model_uri, endpoint)
                waited = serving.wait_for_ping(endpoint, settings["startup_timeout"], self.server)
                self.log.info("%s answered /ping after %.1f s", endpoint, waited)
                outcome = serving.judge(
                    endpoint,
                    body,
                    rows=rows,
                    count=settings["count"],
                    timeout=self.request_timeout,
                    outputs=interface.outputs,
                    expected=expected,
                    tolerance=settings["tolerance"],
                    max_p50_ms=settings["max_p50_ms"],
                    max_p95_ms=settings["max_p95_ms"],
                )
            except serving.ServingFailure as failure:
                # The server's answer and log may echo anything: the connection's secrets are removed.
                secrets = self.hook.config.secrets
                tail = self.server.log_tail(secrets) if self.server else ""
                what = redact(f"{failure.what}: {failure}", secrets)
                self._record_verdict(context, run, version, settings, failure.measured, what)
                message = (
                    f"Serving check of {self.model_name!r} version {version} failed ({failure.what}): "
                    f"{redact(str(failure), secrets)}"
                )
                if tail:
                    message += f"\nLast lines of the scoring server's log:\n{tail}"
                error = MLflowServingCheckError(message)
                run.user_error = error  # the model's fault, never an MLflow outage
                raise error from None
        finally:
            if self.server is not None:
                self.server.stop()
        self._record_verdict(context, run, version, settings, outcome, None)
        self.log.info(
            "%s version %s serves: %d rows, p50 %.2f ms, p95 %.2f ms over %d requests",
            self.model_name, version, outcome["rows"],
            outcome["p50_ms"], outcome["p95_ms"], settings["count"],
        )  # fmt: skip
        return {
            "name": self.model_name,
            "version": version,
            "status": "passed",
            "p50_ms": outcome["p50_ms"],
            "p95_ms": outcome["p95_ms"],
            "requests": settings["count"],
            "rows": outcome["rows"],
            "endpoint": self.endpoint_url or "local",
        }

    def _body(self, interface: Any) -> tuple[dict[str, Any], int | None]:
        """The request body and its row count: ``rows``, else the model's stored example."""
        from airflow_mlflow import serving
        from airflow_mlflow.exceptions import MLflowInputError

        if self.rows is not None:
            columns, data = serving.table_from_rows(_structured("rows", self.rows))
        elif interface.columns is not None:
            columns, data = interface.columns, interface.data
        elif interface.serving_input is not None and self.input_format == DEFAULT_INPUT_FORMAT:
            # Not a table (a tensor or a dict): MLflow's own request body for the example, as is.
            return interface.serving_input, serving.stored_body_rows(interface.serving_input)
        else:
            raise MLflowInputError(
                f"model {self.model_name!r} version {self.version} has no stored input example "
                f"usable as {self.input_format}: give rows="
            )
        return serving.request_body(columns, data, self.input_format), len(data)

    def _record_verdict(
        self,
        context: Context,
        run: TrackedRun,
        version: str,
        settings: dict[str, Any],
        measured: dict[str, Any],
        failure: str | None,
    ) -> None:
        """The verdict onto the version, and the latencies and settings into the task's run."""
        from airflow_mlflow import tags
        from airflow_mlflow.timestamps import iso_utc

        ti = context["ti"]
        verdict = {
            tags.SERVING_STATUS: "failed" if failure else "passed",
            tags.SERVING_P50_MS: str(measured.get("p50_ms", "")),
            tags.SERVING_P95_MS: str(measured.get("p95_ms", "")),
            tags.SERVING_CHECKED_AT: iso_utc(),
            tags.SERVING_DAG_RUN: f"{ti.dag_id}/{ti.run_id}",
            tags.SERVING_FAILURE: failure[:500] if failure else "",
        }
        self.hook.set_version_tags(self.model_name, version, verdict)
        if run.run is None:
            return
        done = {} if failure else run.success_tags()
        self.hook.log_batch(
            run.run.run_id,
            params={
                "serving.model_uri": f"models:/{self.model_name}/{version}",
                "serving.endpoint": self.endpoint_url or "local",
                "serving.input_format": self.input_format,
                "serving.requests": str(settings["count"]),
                "serving.max_p95_ms": str(settings["max_p95_ms"]),
            },
            metrics={f"serving_{k}": v for k, v in measured.items() if k in ("p50_ms", "p95_ms")},
            tags={**verdict, **done},
            known_params=run.run.params,
        )
        run.success_logged = bool(done)

    def on_kill(self) -> None:
        """The task is being killed: stop the scoring server's process group, then end the run."""
        if self.server is not None:
            self.server.stop()
        super().on_kill()
