"""
Property-based bad input: whatever a careless or hostile DAG author passes, either MLflow stores
everything the provider accepted (written through the hook into a real SQLite store and read
back), or the provider refuses it before the first write (the run is left as it was).

Any other outcome fails: an MLflow error after the provider accepted (a half-written run), a
silent change (a value truncated, a key renamed), or a parse-time refusal of what run time takes.
"""

from __future__ import annotations

import math
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.gate import MetricCheck, Verdict, parse_thresholds
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.validation import validate_metrics, validate_params, validate_tags
from tests.support import copy_store, migrated_mlflow_db, mlflow_conn_json

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- inputs -------------------------------------------------------------------------------------

#: Pieces keys are made of: ordinary text, Unicode letters, the separators MLflow treats as paths,
#: and characters it refuses.
_KEY_PIECES = st.one_of(
    st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=6),
    st.sampled_from(["ключ", "精度", "é", "δ", "🙂", "٣", "ǅ"]),
    st.sampled_from(["/", "//", ".", "..", "./", "/.", " ", ":", "-", "_"]),
    st.sampled_from(["#", "!", "\\", "\t", "\n", "\x00", "%", "'", '"', "{", "}"]),
)
KEYS = st.one_of(
    st.lists(_KEY_PIECES, max_size=5).map("".join),
    st.text(max_size=8),
    st.integers(200, 260).map(lambda n: "k" * n),
    st.sampled_from(["a//b", "m/", "a/./b", ".", "", "/a", "a/..", "ключ"]),
)
TEXTS = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
    st.sampled_from(["a\x00b", "\ud800", ""]),
    st.tuples(st.sampled_from("xé"), st.integers(5995, 6005)).map(lambda t: t[0] * t[1]),
    st.tuples(st.sampled_from("yж"), st.integers(7995, 8005)).map(lambda t: t[0] * t[1]),
)
PARAM_VALUES = st.one_of(TEXTS, st.integers(), st.floats(), st.booleans(), st.none())
METRIC_VALUES = st.one_of(
    st.floats(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, True, None, "0.5", "nan", "inf", "1e400", "high", " 3 ", "1_000"]),
)
STEPS = st.one_of(st.integers(min_value=-(2**64), max_value=2**64), st.sampled_from([0, 1.0, 1.5, "3", True]))


GOOD_KEYS = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=8)
GOOD_TEXTS = st.text(string.printable.strip(), max_size=20)
#: Enough params to need a second LogBatch request: a probe at the end lands in the second one.
BULK = {f"bulk{i:03}": i for i in range(120)}


def _mappings(values, good_values=GOOD_TEXTS, bulk=False):
    """
    Mostly good input with at most two suspicious entries at its end, so that a refusal MLflow
    makes comes after the provider's checks passed (and, with ``bulk``, after a first batch).
    """

    def combine(parts):
        big, good, probes = parts
        return {**(BULK if big else {}), **good, **dict(probes)}

    return st.tuples(
        st.booleans() if bulk else st.just(False),
        st.dictionaries(GOOD_KEYS.filter(lambda k: not k.startswith("bulk")), good_values, max_size=3),
        st.lists(st.tuples(KEYS, values), max_size=2),
    ).map(combine)


# -- a real SQLite store, one per module; a fresh run per example ------------------------------


@pytest.fixture(scope="module")
def hook(tmp_path_factory) -> MLflowHook:
    folder = tmp_path_factory.mktemp("bad-input")
    uri = copy_store(migrated_mlflow_db(folder / "template"), folder / "mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn_json(uri, artifact_root=str(folder / "art")))
        hook = MLflowHook()
        # Count the LogBatch requests (the real client still makes them): a refusal must come
        # before the first one, not be MLflow's own refusal translated after some were made.
        hook.requests = []
        real = hook.client.log_batch

        def counted(*args, **kwargs):
            hook.requests.append("log_batch")
            return real(*args, **kwargs)

        hook.client.log_batch = counted
        yield hook


@pytest.fixture(scope="module")
def experiment(hook) -> str:
    return hook.get_or_create_experiment("bad-input")


def _snapshot(client, run_id):
    run = client.get_run(run_id)
    history = {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in run.data.metrics}
    return dict(run.data.params), dict(run.data.tags), history


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


# -- properties ---------------------------------------------------------------------------------


@SETTINGS
@given(
    params=_mappings(PARAM_VALUES, bulk=True),
    metrics=_mappings(METRIC_VALUES, st.floats(-1e6, 1e6)),
    tags=_mappings(TEXTS),
    step=STEPS,
)
def test_log_batch_stores_all_it_accepts_or_writes_nothing(hook, experiment, params, metrics, tags, step):
    client = hook.client
    run_id = hook.create_run(experiment, "r", {}, start_time=1).run_id
    before = _snapshot(client, run_id)
    hook.requests.clear()
    try:
        hook.log_batch(run_id, params=params, metrics=metrics, tags=tags, step=step)
    except MLflowInputError as err:
        assert hook.requests == [], f"refused by MLflow, not by the provider: {err}"
        assert _snapshot(client, run_id) == before
        return
    stored_params, stored_tags, history = _snapshot(client, run_id)
    assert stored_params == {k: str(v) for k, v in params.items()}
    assert {k: stored_tags.get(k) for k in tags} == {k: str(v) for k, v in tags.items()}
    assert set(history) == set(metrics)
    for key, value in metrics.items():
        ((stored_step, stored),) = history[key]
        assert stored_step == int(step) and _same_float(stored, float(value)), (key, value)


@SETTINGS
@given(
    key=st.one_of(GOOD_KEYS, KEYS),
    values=st.lists(st.one_of(st.floats(-1e6, 1e6), METRIC_VALUES), max_size=5),
    steps=st.none() | st.lists(STEPS, max_size=5),
)
def test_metric_history_stores_the_whole_curve_or_nothing(hook, experiment, key, values, steps):
    client = hook.client
    run_id = hook.create_run(experiment, "r", {}, start_time=1).run_id
    hook.requests.clear()
    try:
        hook.log_metric_history(run_id, key, values, steps)
    except MLflowInputError as err:
        assert hook.requests == [], f"refused by MLflow, not by the provider: {err}"
        assert client.get_run(run_id).data.metrics == {}
        return
    points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
    expected_steps = range(len(values)) if steps is None else [int(s) for s in steps]
    assert points == sorted(zip(expected_steps, (float(v) for v in values), strict=True))


@SETTINGS
@given(
    params=_mappings(PARAM_VALUES),
    metrics=_mappings(METRIC_VALUES, st.floats(-1e6, 1e6)),
    tags=_mappings(TEXTS),
)
def test_parse_time_never_refuses_what_run_time_accepts(params, metrics, tags):
    """The parse-time checks (no mlflow) are a subset of the run-time ones, with the same verdict."""
    from airflow_mlflow.validation import check_literals

    try:
        check_literals(params=params, metrics=metrics, tags=tags)
    except MLflowInputError:
        with pytest.raises(MLflowInputError):
            validate_params(params)
            validate_metrics(metrics)
            validate_tags(tags)


_THRESHOLD_NUMBERS = st.one_of(st.none(), st.floats(), st.integers(-5, 5), st.sampled_from([True, "0.5"]))
THRESHOLD_SPECS = st.one_of(
    _THRESHOLD_NUMBERS,
    st.fixed_dictionaries(
        {},
        optional={
            "threshold": _THRESHOLD_NUMBERS,
            "greater_is_better": st.sampled_from([True, False, "yes", None]),
            "min_absolute_change": _THRESHOLD_NUMBERS,
            "min_relative_change": _THRESHOLD_NUMBERS,
            "unknown": st.just(1),
        },
    ),
)


@pytest.fixture(scope="module")
def model_version(hook, experiment) -> tuple[str, str]:
    client = hook.client
    run = client.create_run(experiment)
    client.create_registered_model("bad-input-model")
    mv = client.create_model_version("bad-input-model", f"file://{os.devnull}", run_id=run.info.run_id)
    return "bad-input-model", str(mv.version)


@SETTINGS
@given(thresholds=st.dictionaries(st.one_of(GOOD_KEYS, KEYS), THRESHOLD_SPECS, max_size=3))
def test_accepted_thresholds_can_be_logged_and_recorded(hook, experiment, model_version, thresholds):
    """
    A gate built on accepted thresholds can finish: each metric can be logged on a run, and the
    verdict's tags (``airflow.gate.metric.<name>``) can be written on the version in full.
    """
    try:
        parsed = parse_thresholds(thresholds)
    except MLflowInputError:
        return
    for spec in parsed.values():
        numbers = [spec.threshold, spec.min_absolute_change, spec.min_relative_change]
        assert all(n is None or math.isfinite(n) for n in numbers)
    run_id = hook.create_run(experiment, "r", {}, start_time=1).run_id
    hook.log_batch(run_id, metrics=dict.fromkeys(parsed, 1.0))
    assert hook.client.get_run(run_id).data.metrics == dict.fromkeys(parsed, 1.0)
    name, version = model_version
    checks = tuple(MetricCheck(m, 1.0, None, ">= 0", "passed") for m in parsed)
    tags = Verdict(name, version, None, "passed", checks).version_tags("dag/run")
    hook.set_version_tags(name, version, tags)
    stored = hook.client.get_model_version(name, version).tags
    assert {k: stored.get(k) for k in tags} == tags
