"""
Figure 1: DAG-parse cost.

One pipeline (train, report, register, gate, promote) written four ways, in ``parse_dags/``:

* ``standard_dag.py`` (the baseline the target is judged against): what a user writes without
  the provider, with Airflow's standard pieces: ``@task`` and ``PythonOperator`` s with MLflow
  imported inside the callables, the standard ``PythonSensor`` as the gate, and ``Asset`` outlets
  on register and promote (the provider's registry operators add theirs by themselves);
* ``plain_dag.py`` (the earlier baseline, kept for comparison): the same without the sensor and
  the assets, so it pays for neither;
* ``provider_dag.py``: ``@task.mlflow`` and the provider's operators and sensor;
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

One warning is ignored in every child: importing the standard ``PythonSensor`` makes Airflow
3.3.2 (standard provider 1.21.0) warn that ``airflow.utils.operator_helpers.determine_kwargs`` is
deprecated, and rendering that log line costs the standard DAG several milliseconds per parse
(measured separately, in the notes). Counting it would flatter the provider by more than the 5%
being judged, for a notice that a later Airflow release removes.

Variants run interleaved (one of each per round), so drift on a noisy machine hits them alike.
Separate runs time the provider's and the standard DAG's parse in steps, to say where the
difference goes.
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
    "standard: PythonSensor gate, Asset outlets (baseline)": DAGS / "standard_dag.py",
    "plain PythonOperators, no sensor, no assets": DAGS / "plain_dag.py",
    "provider (@task.mlflow + operators)": DAGS / "provider_dag.py",
    "hand-written, import mlflow at top": DAGS / "mlflow_at_top_dag.py",
}
BASELINE, PLAIN, PROVIDER, AT_TOP = VARIANTS
TARGET = 1.05
#: Airflow's own deprecation notice on importing the standard PythonSensor (see the docstring).
SENSOR_NOTICE = r"The `airflow\.utils\.operator_helpers\.determine_kwargs` attribute is deprecated"

CHILD = f"""
import json, resource, runpy, sys, time, warnings
warnings.filterwarnings("ignore", message={SENSOR_NOTICE!r})
import airflow.sdk  # warm, as in the dag-processor
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
modules_before = len(sys.modules)
wall, cpu = time.perf_counter(), time.process_time()
runpy.run_path(sys.argv[1], run_name="bench_dag_file")
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{
    "wall_ms": wall * 1000, "cpu_ms": cpu * 1000,
    "peak_rss_mb": rss_after / 1024, "rss_added_mb": (rss_after - rss_before) / 1024,
    "modules_added": len(sys.modules) - modules_before,
    "mlflow_imported": "mlflow" in sys.modules,
}}))
"""

# Where a DAG file's parse time goes: its imports in dependency order, each step timed on top of
# the previous ones (so each module is paid once, where it is first needed), Airflow's first Asset
# (both DAGs have asset outlets: the first one loads every provider's asset-URI checks), then the
# DAG file itself with everything already imported (building the DAG objects).
AIRFLOW_SHARED = "Airflow modules both DAGs import (Python operator and decorator, sensor base)"
STEPS = {
    BASELINE: {
        AIRFLOW_SHARED: [
            "airflow.providers.standard.operators.python",
            "airflow.providers.standard.decorators.python",
            "airflow.sdk.bases.sensor",
        ],
        "the standard PythonSensor's module": ["airflow.providers.standard.sensors.python"],
    },
    PROVIDER: {
        AIRFLOW_SHARED: [
            "airflow.providers.standard.operators.python",
            "airflow.providers.standard.decorators.python",
            "airflow.sdk.bases.sensor",
        ],
        "Airflow's extra-link base (the provider's links)": ["airflow.sdk.bases.operatorlink"],
        "airflow_mlflow: the operator, sensor and decorator modules, with what they import": [
            "airflow_mlflow.operators.tracking",
            "airflow_mlflow.operators.registry",
            "airflow_mlflow.sensors.metric_threshold",
            "airflow_mlflow.decorators.mlflow",
        ],
    },
}
#: The child's last two steps, named for the notes.
LAST_STEPS = {
    "first Asset": "Airflow's first Asset (loads the providers' asset-URI checks)",
    "build": "the DAG file, everything imported (building the DAG)",
}
STEPS_CHILD = """
import json, runpy, sys, time, warnings
if sys.argv[3] == "quiet":
    warnings.filterwarnings("ignore", message=sys.argv[4])
import airflow.sdk
out = {}
for step, modules in json.loads(sys.argv[2]).items():
    start = time.perf_counter()
    for module in modules:
        __import__(module)
    out[step] = (time.perf_counter() - start) * 1000
from airflow.sdk import Asset
start = time.perf_counter()
Asset(uri="mlflow-model://mlflow_default/first", name="first")
out["first Asset"] = (time.perf_counter() - start) * 1000
start = time.perf_counter()
runpy.run_path(sys.argv[1], run_name="bench_dag_file")
out["build"] = (time.perf_counter() - start) * 1000
print(json.dumps({
    "steps": out, "provider_modules": sorted(m for m in sys.modules if m.startswith("airflow_mlflow.")),
}))
"""
#: Needed only when a task runs (the hook layer, the run model, the promotion model, the gate);
#: a DAG file should not import them.
EXECUTE_TIME = {
    "airflow_mlflow.runs",
    "airflow_mlflow.attempts",
    "airflow_mlflow.champion",
    "airflow_mlflow.gate",
}


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


def parse_in_steps(variant: str, env: dict[str, str], quiet: bool = True) -> dict:
    cmd = [sys.executable, "-c", STEPS_CHILD, str(VARIANTS[variant]), json.dumps(STEPS[variant])]
    cmd += ["quiet" if quiet else "loud", SENSOR_NOTICE]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["steps"] = {LAST_STEPS.get(step, step): ms for step, ms in result["steps"].items()}
    return result


def _steps_text(steps: dict[str, float]) -> str:
    return "; ".join(f"{step} {ms:.1f} ms" for step, ms in steps.items())


def run(args: argparse.Namespace) -> Figure:
    rounds = 2 if args.quick else 20
    step_runs = 1 if args.quick else 9
    figure = Figure(
        key="parse",
        title="1. DAG-parse cost (runpy.run_path of one DAG file, airflow.sdk already imported)",
        metric="parse wall time",
        target=f"provider within {TARGET - 1:.0%} of the standard DAG (PythonSensor, Asset outlets): "
        "wall time, the median and the fastest round; peak RSS",
    )
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        env = child_env(Path(pycache))
        for path in VARIANTS.values():  # warm-up: fills the bytecode cache, not measured
            parse_once(path, env)
        samples: dict[str, list[dict]] = {name: [] for name in VARIANTS}
        for _ in range(rounds):
            for name, path in VARIANTS.items():
                samples[name].append(parse_once(path, env))
        steps = {variant: [parse_in_steps(variant, env) for _ in range(step_runs)] for variant in STEPS}
        loud = [parse_in_steps(BASELINE, env, quiet=False) for _ in range(step_runs)]

    def med(name: str, key: str) -> float:
        return median([s[key] for s in samples[name]])

    walls = {name: med(name, "wall_ms") for name in VARIANTS}
    rss = {name: med(name, "peak_rss_mb") for name in VARIANTS}
    cpus = {name: med(name, "cpu_ms") for name in VARIANTS}
    # The fastest round of each variant is the one least disturbed by other load on the machine.
    fastest = {name: min(s["wall_ms"] for s in samples[name]) for name in VARIANTS}
    for name in VARIANTS:
        wall = spread([s["wall_ms"] for s in samples[name]])
        figure.add(
            name,
            {
                "wall ms (median)": wall["median"],
                "wall ms (min..max)": f"{wall['min']:.0f}..{wall['max']:.0f}",
                "CPU ms": cpus[name],
                "peak RSS MB": rss[name],
                "RSS ratio": ratio(rss[name], rss[BASELINE]),
                "RSS added by parse MB": med(name, "rss_added_mb"),
                "modules imported": int(med(name, "modules_added")),
                "imports mlflow": samples[name][0]["mlflow_imported"],
                "vs plain (median)": f"{walls[name] / walls[PLAIN]:.2f}x",
                "vs plain (fastest)": f"{fastest[name] / fastest[PLAIN]:.2f}x",
                "vs standard (fastest)": f"{fastest[name] / fastest[BASELINE]:.2f}x",
            },
            ratio=ratio(walls[name], walls[BASELINE]),
            baseline=name == BASELINE,
        )

    def versus(base: str) -> tuple[float, float]:
        """The provider's wall time against ``base``: medians, and fastest rounds."""
        return walls[PROVIDER] / walls[base], fastest[PROVIDER] / fastest[base]

    (wall_ratio, fastest_ratio), (plain_ratio, plain_fastest) = versus(BASELINE), versus(PLAIN)
    paired = median(
        [p["wall_ms"] / b["wall_ms"] for b, p in zip(samples[BASELINE], samples[PROVIDER], strict=True)]
    )
    rss_ratio = rss[PROVIDER] / rss[BASELINE]
    # Judged on the fastest rounds too: on a loaded machine the medians alone swing by more than
    # the 5% being judged (0.96x to 1.39x in runs of the same code), and noise must not pass it.
    figure.target_met = wall_ratio <= TARGET and fastest_ratio <= TARGET and rss_ratio <= TARGET
    figure.summary = {
        "baseline": f"standard (PythonSensor, Asset outlets): {walls[BASELINE]:.0f} ms, "
        f"{rss[BASELINE]:.0f} MB; plain (no sensor, no assets): {walls[PLAIN]:.0f} ms, {rss[PLAIN]:.0f} MB; "
        f"mlflow at top: {walls[AT_TOP]:.0f} ms, {rss[AT_TOP]:.0f} MB",
        "provider": f"{walls[PROVIDER]:.0f} ms, {rss[PROVIDER]:.0f} MB",
        "ratio": f"vs standard: {wall_ratio:.2f}x time (fastest rounds: {fastest_ratio:.2f}x), "
        f"{rss_ratio:.2f}x RSS; vs plain: {plain_ratio:.2f}x (fastest rounds: {plain_fastest:.2f}x), "
        f"{rss[PROVIDER] / rss[PLAIN]:.2f}x RSS; "
        f"{walls[PROVIDER] / walls[AT_TOP]:.3f}x time vs mlflow at top",
    }

    def step_medians(runs: list[dict]) -> dict[str, float]:
        return {step: median([r["steps"][step] for r in runs]) for step in runs[0]["steps"]}

    breakdown = {variant: step_medians(runs) for variant, runs in steps.items()}
    loaded = steps[PROVIDER][0]["provider_modules"]
    execute_time = [m for m in loaded if m in EXECUTE_TIME or m.startswith("airflow_mlflow.hooks.")]
    notice_ms = breakdown[BASELINE]["the standard PythonSensor's module"]
    notice_ms = step_medians(loud)["the standard PythonSensor's module"] - notice_ms
    figure.details = {
        "rounds": rounds,
        "samples": samples,
        "parse_steps_ms": breakdown,
        "provider_modules_at_parse": loaded,
        "execute_time_modules_at_parse": execute_time,
        "sensor_notice_ms": notice_ms,
    }
    figure.notes.append(
        f"Judged against the standard DAG: {wall_ratio:.2f}x (median), {fastest_ratio:.2f}x (fastest "
        f"rounds: standard {fastest[BASELINE]:.1f} ms, provider {fastest[PROVIDER]:.1f} ms), "
        f"{walls[PROVIDER] - walls[BASELINE]:+.1f} ms; median of the rounds' own ratios (each round "
        f"parses the files back to back) {paired:.2f}x; CPU time (medians) "
        f"{cpus[PROVIDER] / cpus[BASELINE]:.2f}x. Against plain, which has no sensor and no assets: "
        f"{plain_ratio:.2f}x (median), {plain_fastest:.2f}x (fastest rounds: plain {fastest[PLAIN]:.1f} ms), "
        f"{walls[PROVIDER] - walls[PLAIN]:+.1f} ms; the standard DAG itself is "
        f"{walls[BASELINE] / walls[PLAIN]:.2f}x plain."
    )
    figure.notes.append(
        f"Parse in steps (median of {step_runs} runs each, each import timed where first needed). "
        f"Standard: {_steps_text(breakdown[BASELINE])}. Provider: {_steps_text(breakdown[PROVIDER])}. "
        f"The provider's DAG imports {len(loaded)} airflow_mlflow modules ({', '.join(loaded)}); "
        + (
            f"execute-time modules among them: {', '.join(execute_time)}."
            if execute_time
            else "no execute-time ones (the hook layer, the run model, the promotion model, the gate)."
        )
    )
    figure.notes.append(
        f"Not counted (see the figure's docstring): Airflow's deprecation notice on importing the "
        f"standard PythonSensor costs the standard DAG {notice_ms:.1f} ms more per parse when shown."
    )
    figure.notes.append(
        f"import mlflow at the top of a DAG file costs {walls[AT_TOP] - walls[BASELINE]:.0f} ms and "
        f"{rss[AT_TOP] - rss[BASELINE]:.0f} MB more per parse than the standard DAG."
    )
    return figure


if __name__ == "__main__":
    cli(run, __doc__)
