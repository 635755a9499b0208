"""
What every figure shares: statistics, the result record, the command line, a real
``mlflow server`` and an isolated Airflow home.

Each figure is a module with ``run(args) -> Figure``; run one with ``python -m bench.<name> [--quick]``.
It prints its table and, with ``--json PATH``, writes its result record there; ``bench.run_all``
collects the records into ``bench/results.md`` and ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# MLflow's telemetry thread, failing to reach its servers from this offline machine, unsets
# _MLFLOW_TELEMETRY_SESSION_ID while requests iterates os.environ in another thread: a KeyError
# failed a task of the 50-run Celery bench. Tests are spared by PYTEST_CURRENT_TEST / CI, which
# MLflow reads as "no telemetry"; every process the bench starts inherits this.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
BENCH = ROOT / "bench"
#: Set by ``run_all`` so the figures share one server instead of booting one each (~20 s).
SERVER_ENV = "BENCH_MLFLOW_URL"


# -- statistics ----------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))])


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (the record keeps all three)."""
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratio(value: float, baseline: float) -> float | None:
    return value / baseline if baseline else None


# -- the result record ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a figure's table: a variant, its numbers, and its ratio to the baseline."""

    name: str
    values: dict[str, Any]
    ratio: float | None = None
    baseline: bool = False


@dataclass
class Figure:
    """A figure's result: rows against a baseline, the target and whether it holds, notes."""

    key: str
    title: str
    metric: str  # what the ratio compares, e.g. "parse wall time"
    rows: list[Row] = field(default_factory=list)
    target: str = ""
    target_met: bool | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    quick: bool = False
    #: One line for the summary table: ``{"baseline": ..., "provider": ..., "ratio": ...}``.
    summary: dict[str, str] = field(default_factory=dict)
    #: An explicit table for results.md (``{"columns": [...], "rows": [[...]]}``) when the rows'
    #: generic layout does not read well.
    table: dict[str, list] = field(default_factory=dict)

    def add(self, name: str, values: dict[str, Any], ratio: float | None = None, baseline: bool = False):
        self.rows.append(Row(name, values, ratio, baseline))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def print(self) -> None:
        print(f"\n== {self.title}{' (quick)' if self.quick else ''}")
        if self.table:
            print("  " + " | ".join(self.table["columns"]))
            for cells in self.table["rows"]:
                print("  " + " | ".join(_fmt(c) for c in cells))
        for row in [] if self.table else self.rows:
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in row.values.items())
            tag = " [baseline]" if row.baseline else f"  ratio {_fmt(row.ratio)}" if row.ratio else ""
            print(f"  {row.name}: {shown}{tag}")
        if self.target:
            verdict = {True: "holds", False: "MISSED", None: "n/a"}[self.target_met]
            print(f"  target: {self.target} -> {verdict}")
        for note in self.notes:
            print(f"  note: {note}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if value is None:
        return "-"
    return str(value)


fmt = _fmt


def cli(run: Callable[[argparse.Namespace], Figure], doc: str, argv: Sequence[str] | None = None) -> Figure:
    """Parse ``--quick`` / ``--json``, measure with ``run(args)``, print the figure, write its record."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CI smoke run")
    parser.add_argument("--json", type=Path, help="write the result record to this file")
    args = parser.parse_args(argv)
    figure = run(args)
    figure.quick = args.quick
    if args.quick:  # a smoke run: its sizes say nothing about the targets
        figure.details["target_met_at_quick_size"] = figure.target_met
        figure.target_met = None
    figure.print()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figure.to_json(), indent=2) + "\n")
    return figure


# -- services ------------------------------------------------------------------------------------


@contextlib.contextmanager
def mlflow_server() -> Iterator[str]:
    """
    The URL of a real ``mlflow server`` (PostgreSQL store, proxied artifacts): the one ``run_all``
    shares through ``$BENCH_MLFLOW_URL``, else one started here with the integration tier's helper.
    """
    shared = os.environ.get(SERVER_ENV)
    if shared:
        yield shared
        return
    from tests.integration._mlflow_servers import ServerProcess, drop_stale_databases

    drop_stale_databases()
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as workdir:
        server = ServerProcess(Path(workdir))
        try:
            yield server.wait_healthy().url
        finally:
            server.stop()


def quiet_mlflow_client() -> None:
    """Fail fast instead of retrying for minutes, and keep MLflow's warnings out of the output."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def server_conn(url: str) -> str:
    """``AIRFLOW_CONN_MLFLOW_DEFAULT`` for an MLflow server URL."""
    host, port = url.removeprefix("http://").split(":")
    return json.dumps({"conn_type": "mlflow", "host": host, "port": int(port), "schema": "http"})


def airflow_home(dags_folder: Path, migrate: bool = False) -> Path:
    """
    A fresh ``AIRFLOW_HOME`` for this process (set before anything imports airflow), with
    ``dags_folder`` as its DAGs folder, optionally with a migrated SQLite metadata DB.
    """
    home = Path(tempfile.mkdtemp(prefix="bench-airflow-"))
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    )
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
        del os.environ[key]
    if migrate:
        airflow = Path(sys.executable).with_name("airflow")
        subprocess.run(
            [str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
        )
    return home
