"""
Figure 1: DAG-parse cost.

One pipeline (train, report, register, gate, promote) written three ways, in ``parse_dags/``:

* ``provider_dag.py``: ``@task.mlflow`` and the provider's operators and sensor;
* ``plain_dag.py`` (the baseline): ``@task`` and plain ``PythonOperator`` s, MLflow imported
  inside the callables;
* ``mlflow_at_top_dag.py``: the common hand-written pattern, ``import mlflow`` at the top.

Each parse runs in a fresh interpreter that first imports ``airflow.sdk`` (the dag-processor
has it loaded) and then times ``runpy.run_path`` of the one file: wall and CPU time.

Memory is the child's peak RSS (``ru_maxrss``) after the parse, and how much the parse raised
it. We use RSS rather than tracemalloc because tracemalloc sees only allocations made through
Python's allocator (not those of C extensions, which a real import makes too) and slows imports
several-fold, which would distort the time measured in the same process.

Bytecode: this machine sets ``PYTHONDONTWRITEBYTECODE``, so an editable install of the provider
would be compiled from source at every parse, which no real deployment does (a wheel install
ships ``.pyc`` files). The children therefore get a private ``PYTHONPYCACHEPREFIX`` that one
untimed warm-up round fills.

Variants run interleaved (one of each per round), so drift on a noisy machine hits them alike.
A separate ``-X importtime`` run of the provider's file says where its extra time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._common import BENCH, ROOT, Figure, cli, median, ratio, spread

DAGS = BENCH / "parse_dags"
VARIANTS = {
    "plain PythonOperators (baseline)": DAGS / "plain_dag.py",
    "provider (@task.mlflow + operators)": DAGS / "provider_dag.py",
    "hand-written, import mlflow at top": DAGS / "mlflow_at_top_dag.py",
}
BASELINE, PROVIDER, AT_TOP = VARIANTS
TARGET = 1.05

CHILD = """
import json, resource, runpy, sys, time
import airflow.sdk  # warm, as in the dag-processor
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
modules_before = len(sys.modules)
wall, cpu = time.perf_counter(), time.process_time()
runpy.run_path(sys.argv[1], run_name="bench_dag_file")
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "wall_ms": wall * 1000, "cpu_ms": cpu * 1000,
    "peak_rss_mb": rss_after / 1024, "rss_added_mb": (rss_after - rss_before) / 1024,
    "modules_added": len(sys.modules) - modules_before,
    "mlflow_imported": "mlflow" in sys.modules,
}))
"""

# Where the provider's extra parse time goes: its imports in dependency order, each step timed
# on top of the previous ones (so each module is paid once, where it is first needed), the first
# Asset built (the register and promote tasks' outlets), then the DAG file itself with everything
# already imported (building the DAG objects). The hook layer and the run model are not among
# them: a DAG file does not import them (tests/unit/test_imports.py keeps it so).
STEPS_CHILD = """
import json, runpy, sys, time
import airflow.sdk
steps = {
    "Airflow modules the plain DAG also imports": [
        "airflow.providers.standard.operators.python", "airflow.providers.standard.decorators.python",
    ],
    "Airflow modules only the provider needs (sensor and extra-link bases)": [
        "airflow.sdk.bases.sensor", "airflow.sdk.bases.operatorlink",
    ],
    "airflow_mlflow shared modules (exceptions, validation, links, assets)": [
        "airflow_mlflow.exceptions", "airflow_mlflow.validation", "airflow_mlflow.links.mlflow",
        "airflow_mlflow.assets",
    ],
    "airflow_mlflow operator, sensor and decorator classes": [
        "airflow_mlflow.operators.base", "airflow_mlflow.operators.tracking",
        "airflow_mlflow.operators.registry", "airflow_mlflow.sensors.metric_threshold",
        "airflow_mlflow.decorators.mlflow",
    ],
}
out = {}
for step, modules in steps.items():
    start = time.perf_counter()
    for module in modules:
        __import__(module)
    out[step] = (time.perf_counter() - start) * 1000
from airflow.sdk import Asset
start = time.perf_counter()
Asset(uri="mlflow-model://mlflow_default/first", name="first")
out["Airflow's first Asset (loads the providers' asset URI checks)"] = (time.perf_counter() - start) * 1000
start = time.perf_counter()
runpy.run_path(sys.argv[1], run_name="bench_dag_file")
out["the DAG file, everything imported (building the DAG)"] = (time.perf_counter() - start) * 1000
execute_time = ("airflow_mlflow.hooks.mlflow", "airflow_mlflow.runs")
out["hook layer imported"] = any(m in sys.modules for m in execute_time)
print(json.dumps(out))
"""


def child_env(pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PYTHONPYCACHEPREFIX=str(pycache),
        AIRFLOW_HOME=tempfile.mkdtemp(prefix="bench-parse-home-"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=str(ROOT),
    )
    return env


def parse_once(path: Path, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_in_steps(path: Path, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", STEPS_CHILD, str(path)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> Figure:
    rounds = 2 if args.quick else 20
    figure = Figure(
        key="parse",
        title="1. DAG-parse cost (runpy.run_path of one DAG file, airflow.sdk already imported)",
        metric="parse wall time",
        target=f"provider within {TARGET - 1:.0%} of plain (wall time: the median and the fastest "
        "round; peak RSS)",
    )
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        env = child_env(Path(pycache))
        for path in VARIANTS.values():  # warm-up: fills the bytecode cache, not measured
            parse_once(path, env)
        samples: dict[str, list[dict]] = {name: [] for name in VARIANTS}
        for _ in range(rounds):
            for name, path in VARIANTS.items():
                samples[name].append(parse_once(path, env))
        breakdowns = [parse_in_steps(VARIANTS[PROVIDER], env) for _ in range(1 if args.quick else 9)]
        plain_builds = [parse_in_steps(VARIANTS[BASELINE], env) for _ in range(1 if args.quick else 9)]

    def med(name: str, key: str) -> float:
        return median([s[key] for s in samples[name]])

    base_wall, base_cpu, base_rss = (med(BASELINE, k) for k in ("wall_ms", "cpu_ms", "peak_rss_mb"))
    for name in VARIANTS:
        wall = spread([s["wall_ms"] for s in samples[name]])
        figure.add(
            name,
            {
                "wall ms (median)": wall["median"],
                "wall ms (min..max)": f"{wall['min']:.0f}..{wall['max']:.0f}",
                "CPU ms": med(name, "cpu_ms"),
                "CPU ratio": ratio(med(name, "cpu_ms"), base_cpu),
                "peak RSS MB": med(name, "peak_rss_mb"),
                "RSS ratio": ratio(med(name, "peak_rss_mb"), base_rss),
                "RSS added by parse MB": med(name, "rss_added_mb"),
                "modules imported": int(med(name, "modules_added")),
                "imports mlflow": samples[name][0]["mlflow_imported"],
            },
            ratio=ratio(wall["median"], base_wall),
            baseline=name == BASELINE,
        )
    wall_ratio = ratio(med(PROVIDER, "wall_ms"), base_wall)
    # The fastest round of each variant is the one least disturbed by other load on the machine.
    fastest = {name: min(s["wall_ms"] for s in samples[name]) for name in VARIANTS}
    fastest_ratio = ratio(fastest[PROVIDER], fastest[BASELINE])
    paired = median(
        [p["wall_ms"] / b["wall_ms"] for b, p in zip(samples[BASELINE], samples[PROVIDER], strict=True)]
    )
    rss_ratio = ratio(med(PROVIDER, "peak_rss_mb"), base_rss)
    # Judged on the fastest rounds too: on a loaded machine the medians alone swing by more than
    # the 5% being judged (0.96x to 1.39x in runs of the same code), and noise must not pass it.
    figure.target_met = wall_ratio <= TARGET and fastest_ratio <= TARGET and rss_ratio <= TARGET
    figure.summary = {
        "baseline": f"plain: {base_wall:.0f} ms, {base_rss:.0f} MB; mlflow at top: "
        f"{med(AT_TOP, 'wall_ms'):.0f} ms, {med(AT_TOP, 'peak_rss_mb'):.0f} MB",
        "provider": f"{med(PROVIDER, 'wall_ms'):.0f} ms, {med(PROVIDER, 'peak_rss_mb'):.0f} MB",
        "ratio": f"{wall_ratio:.2f}x time (fastest rounds: {fastest_ratio:.2f}x), "
        f"{rss_ratio:.2f}x RSS vs plain; "
        f"{med(PROVIDER, 'wall_ms') / med(AT_TOP, 'wall_ms'):.3f}x time vs mlflow at top",
    }
    hook_layer = any(b.pop("hook layer imported") for b in breakdowns)
    for b in plain_builds:
        b.pop("hook layer imported")
    breakdown = {step: median([b[step] for b in breakdowns]) for step in breakdowns[0]}
    build_key = list(breakdown)[-1]
    plain_build = median([b[build_key] for b in plain_builds])
    shared, *provider_steps, _ = breakdown  # Airflow modules plain imports too; ...; building the DAG
    provider_only = sum(breakdown[step] for step in provider_steps)
    figure.details = {
        "rounds": rounds,
        "samples": samples,
        "provider_parse_steps_ms": breakdown,
        "hook_layer_imported_at_parse": hook_layer,
        "plain_dag_build_ms": plain_build,
    }
    figure.notes.append(
        f"The provider's parse costs {med(PROVIDER, 'wall_ms') - base_wall:+.1f} ms against plain. "
        f"Its parse in steps (median of {len(breakdowns)} runs, each import timed where first needed): "
        + "; ".join(f"{step} {ms:.1f} ms" for step, ms in breakdown.items())
        + f" (plain: {plain_build:.1f} ms to build its DAG)."
        + f" The steps only the provider pays sum to {provider_only:.1f} ms, "
        f"{provider_only / fastest[BASELINE]:.0%} of plain's fastest parse."
        + (
            " The hook layer (airflow_mlflow.hooks.*) and the run model were imported too."
            if hook_layer
            else " The hook layer (airflow_mlflow.hooks.*) and the run model are not imported at parse time."
        )
    )
    figure.notes.append(
        f"Fastest of {rounds} rounds, the least disturbed by other load: plain {fastest[BASELINE]:.1f} ms, "
        f"provider {fastest[PROVIDER]:.1f} ms ({fastest_ratio:.2f}x). Median of the rounds' own ratios "
        f"(each round parses both files back to back): {paired:.2f}x; CPU time (medians): "
        f"{ratio(med(PROVIDER, 'cpu_ms'), base_cpu):.2f}x."
    )
    figure.notes.append(
        f"import mlflow at the top of a DAG file costs {med(AT_TOP, 'wall_ms') - base_wall:.0f} ms and "
        f"{med(AT_TOP, 'peak_rss_mb') - base_rss:.0f} MB more per parse than plain."
    )
    return figure


if __name__ == "__main__":
    cli(run, __doc__)
