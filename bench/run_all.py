"""
Run every figure and write the results: ``bench/results.md`` and ``bench/results.json``
(with ``--quick``: small sizes, written to ``bench/out/`` so a smoke run never replaces the
published numbers).

Figure 1 (parse cost) runs first, before anything else is started, so no server boots beside
it; then one ``mlflow server`` (PostgreSQL) is started and shared by figures 2-6 through
``$BENCH_MLFLOW_URL``. Each figure runs in its own interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench._common import BENCH, ROOT, SERVER_ENV, fmt

FIGURES = (
    "parse_cost",
    "requests_per_task",
    "throughput",
    "task_overhead",
    "gate_scale",
    "throttle",
    "task_start",
    "celery_scale",
)


def run_figure(module: str, out: Path, quick: bool) -> dict:
    """The figure's record; a figure that fails is recorded as failed and the run goes on."""
    started = time.monotonic()
    cmd = [sys.executable, "-m", f"bench.{module}", "--json", str(out / f"{module}.json")]
    done = subprocess.run(cmd + (["--quick"] if quick else []), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        print(f"[bench] {module} FAILED (exit {done.returncode})", flush=True)
        error = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {
            "key": module,
            "title": f"{module}: failed",
            "target": None,
            "target_met": None,
            "summary": {"provider": f"failed: {error[0][:200]}"},
            "rows": [],
            "notes": [f"`python -m bench.{module}` failed: `{error[0][:300]}`"],
            "failed": True,
            "elapsed_s": time.monotonic() - started,
        }
    record = json.loads((out / f"{module}.json").read_text())
    record["elapsed_s"] = time.monotonic() - started
    print(f"[bench] {module} took {record['elapsed_s']:.0f} s", flush=True)
    return record


def machine() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--", "provider"):
        commit += " with uncommitted changes in provider/"
    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "apache-airflow": version("apache-airflow"),
        "mlflow": version("mlflow"),
        "commit": commit,
    }


def markdown(results: dict) -> str:
    env = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"`make bench{' QUICK=1' if results['quick'] else ''}` on {results['date']}, "
        f"{env['cpus']} CPUs (load average {env['load_average'][0]:.1f} at the start, "
        f"{results['load_average_end'][0]:.1f} at the end), Python {env['python']}, "
        f"Airflow {env['apache-airflow']}, MLflow {env['mlflow']}, commit {env['commit']}; "
        f"{results['elapsed_s'] / 60:.1f} minutes in all.",
        "",
        "Every ratio compares with a baseline measured in the same run on the same machine;",
        "times are medians of repetitions. This machine is shared and noisy: read the ratios,",
        "and the absolute numbers only as context.",
        *(
            ["", "**Quick (smoke) run**: sizes too small to judge the targets; see `bench/results.md`."]
            if results["quick"]
            else []
        ),
        "",
        "| figure | baseline | provider | ratio | target | holds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for fig in results["figures"]:
        summary = fig.get("summary") or {}
        met = {True: "yes", False: "**no**", None: "-"}[fig["target_met"]]
        lines.append(
            f"| {fig['title'].split(':')[0]} | {summary.get('baseline', '')} | {summary.get('provider', '')} "
            f"| {summary.get('ratio', '')} | {fig['target'] or '-'} | {met} |"
        )
    for fig in results["figures"]:
        lines += ["", f"## {fig['title']}", ""]
        lines += _table(fig)
        if fig["target"]:
            verdict = {True: "holds", False: "**missed**", None: "n/a"}[fig["target_met"]]
            lines += ["", f"Target: {fig['target']}: {verdict}."]
        if fig["notes"]:
            lines += [""] + [f"* {note}" for note in fig["notes"]]
    return "\n".join(lines) + "\n"


def _table(fig: dict) -> list[str]:
    if fig.get("table"):
        columns, rows = fig["table"]["columns"], fig["table"]["rows"]
    else:
        keys: list[str] = []
        for row in fig["rows"]:
            keys += [k for k in row["values"] if k not in keys]
        columns = ["", *keys, "ratio"]
        rows = []
        for row in fig["rows"]:
            ratio = "baseline" if row["baseline"] else fmt(row["ratio"]) + "x" if row["ratio"] else "-"
            rows.append([row["name"], *(row["values"].get(k) for k in keys), ratio])
    out = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    out += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run; asserts no speed)")
    parser.add_argument("--only", nargs="+", choices=FIGURES, help="run only these figures")
    args = parser.parse_args()
    out = BENCH / "out" if args.quick else BENCH
    started, env = time.monotonic(), machine()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    figures = [f for f in FIGURES if not args.only or f in args.only]
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        parts = Path(tmp)
        if "parse_cost" in figures:
            records.append(run_figure("parse_cost", parts, args.quick))
        rest = [f for f in figures if f != "parse_cost"]
        if rest:
            from bench._common import mlflow_server

            with mlflow_server() as url:
                os.environ[SERVER_ENV] = url
                for module in rest:
                    records.append(run_figure(module, parts, args.quick))
    results = {
        "date": date,
        "quick": args.quick,
        "machine": env,
        "load_average_end": os.getloadavg(),
        "elapsed_s": time.monotonic() - started,
        "figures": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    print(f"[bench] wrote {out / 'results.md'} and results.json in {results['elapsed_s'] / 60:.1f} min")
    failed = [fig["key"] for fig in records if fig.get("failed")]
    if failed:
        sys.exit(f"[bench] failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
