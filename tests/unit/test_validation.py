"""
Input validation: exactly MLflow's rule for keys, checked before the first write; literals checked
when the DAG is parsed; artifact folders keep their name.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

from airflow_mlflow import MLflowLogOperator
from airflow_mlflow.exceptions import MLflowInputError
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.plugins import listener
from airflow_mlflow.validation import validate_params, validate_tags
from tests.assertions import states
from tests.dags import validation as dags

#: Keys MLflow refuses although they look harmless: each resolves to another path.
PATH_LIKE_KEYS = ["a//b", "m/", "a/./b", ".", "./a", "a/..", "a/../b", "/a", "..", ""]
#: Keys MLflow stores: any Unicode letter or digit, and its punctuation.
UNICODE_KEYS = ["ключ", "精度", "métrique/é", "δ_loss", "ключ:1 a-b.c"]
#: A corpus for the seam test: whatever MLflow's private validators say, ours must say.
CORPUS = [
    *PATH_LIKE_KEYS,
    *UNICODE_KEYS,
    "plain",
    "with space",
    "a:b",
    "a/b/c",
    "bad key!",
    "tab\there",
    "new\nline",
    "nul\x00",
    "a#b",
    "a\\b",
    "emoji🙂",
    "x" * 250,
    "trailing ",
    "..a",
    "a..b",
    "a/.b",
    "_",
]


def run(dag, **conf):
    dag_run = dag.test(run_conf=conf or None)
    listener.drain()
    return dag_run


def task_runs(store, experiment: str) -> dict[str, str]:
    """Run id of each task's run in the experiment (none when the experiment was never created)."""
    exp = store.client.get_experiment_by_name(experiment)
    runs = store.client.search_runs([exp.experiment_id]) if exp else []
    return {r.data.tags["airflow.task_id"]: r.info.run_id for r in runs if "airflow.task_id" in r.data.tags}


def assert_nothing_written(store, experiment: str, task_id: str = "log") -> None:
    """
    The task wrote nothing: no params, metrics or artifacts. (The end of the DAG run may record the
    failed attempt on a run of its own: FAILED, holding only the provider's bookkeeping tags.)
    """
    run_id = task_runs(store, experiment).get(task_id)
    if run_id is None:
        return
    run = store.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.params == {} and run.data.metrics == {}
    assert store.client.list_artifacts(run_id) == []


@pytest.fixture
def hook(store) -> MLflowHook:
    return MLflowHook()


@pytest.fixture
def run_id(hook) -> str:
    exp = hook.get_or_create_experiment("validation")
    return hook.create_run(exp, "r", {}, start_time=1).run_id


# -- the seam to MLflow's rule ------------------------------------------------------------------


@pytest.mark.parametrize("key", CORPUS)
def test_key_rule_is_mlflows_own(key):
    """Fails when MLflow's private name validators stop agreeing with the public checks we call."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    from airflow_mlflow.validation import mlflow_key_problem

    verdicts = set()
    for check in (
        validation._validate_param_name,
        validation._validate_metric_name,
        validation._validate_tag_name,
    ):
        try:
            check(key)
            verdicts.add(True)
        except MlflowException:
            verdicts.add(False)
    assert verdicts == {mlflow_key_problem(key) is None}, key


def test_limits_are_mlflows():
    from mlflow.utils import validation

    from airflow_mlflow.validation import (
        MAX_KEY_LENGTH,
        MAX_PARAM_VALUE_LENGTH,
        MAX_REGISTRY_TAG_VALUE_LENGTH,
        MAX_TAG_VALUE_LENGTH,
    )

    assert MAX_KEY_LENGTH == validation.MAX_ENTITY_KEY_LENGTH
    assert MAX_PARAM_VALUE_LENGTH == validation.MAX_PARAM_VAL_LENGTH
    assert MAX_TAG_VALUE_LENGTH == validation.MAX_TAG_VAL_LENGTH
    assert MAX_REGISTRY_TAG_VALUE_LENGTH == validation.MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH


def test_artifact_path_seam_is_mlflows_check():
    from mlflow.exceptions import MlflowException
    from mlflow.utils.uri import validate_path_is_safe

    from airflow_mlflow.validation import validate_artifact_folder

    for folder in ["../up", "/abs", "a#b", "a/../b"]:
        with pytest.raises(MlflowException):
            validate_path_is_safe(folder)
        with pytest.raises(MLflowInputError, match=f"destination folder {folder!r} is invalid"):
            validate_artifact_folder(folder)
    for folder in ["q?x", "p%41", "a#b"]:  # renamed in transit by MLflow's HTTP artifact client
        with pytest.raises(MLflowInputError, match="would store it under another name"):
            validate_artifact_folder(folder)
    assert validate_artifact_folder("plots/") == "plots"
    assert validate_artifact_folder("a/b") == "a/b"


# -- item 4: what MLflow refuses is refused before the first write ------------------------------


@pytest.mark.parametrize("key", PATH_LIKE_KEYS)
@pytest.mark.parametrize("kind", ["params", "metrics", "tags"])
def test_path_like_key_refused_before_the_first_batch(hook, store, run_id, kind, key):
    # 150 good params fill the first batch and a half; the bad key comes last.
    good = {f"p{i:03}": i for i in range(150)}
    bad = {key: 1}
    kwargs = {"params": good, kind: {**(good if kind == "params" else {}), **bad}}
    with pytest.raises(MLflowInputError, match=f"{kind[:-1]} key"):
        hook.log_batch(run_id, **kwargs)
    data = store.client.get_run(run_id).data
    assert data.params == {} and data.metrics == {} and data.tags.keys() <= {"mlflow.runName"}


def test_log_operator_refuses_before_writing_anything(store, airflow_db):
    dag_run = run(dags.bad_key_log)
    assert states(dag_run) == {"log": "failed"}
    assert_nothing_written(store, "bad_key_log")


# -- item 8: what MLflow stores is accepted ----------------------------------------------------


def test_unicode_keys_are_accepted_and_stored(hook, store, run_id):
    keys = {k: i for i, k in enumerate(UNICODE_KEYS)}
    hook.log_batch(run_id, params=keys, metrics=keys, tags=keys)
    data = store.client.get_run(run_id).data
    expected = {k: str(v) for k, v in keys.items()}
    assert data.params == expected
    assert data.metrics == {k: float(v) for k, v in keys.items()}
    assert {k: data.tags[k] for k in keys} == expected


def test_metric_history_takes_a_unicode_key(hook, store, run_id):
    hook.log_metric_history(run_id, "потеря", [0.5, 0.25])
    assert [p.value for p in store.client.get_metric_history(run_id, "потеря")] == [0.5, 0.25]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": {"p": "a\x00b"}}, "param 'p' value 'a\\x00b' contains a NUL character"),
        ({"tags": {"t": "\ud800"}}, "tag 't' value '\\ud800' is not valid Unicode text"),
        ({"metrics": {"m": 10**400}}, "metric 'm' must be finite"),
        ({"params": {1: "x"}}, "params: param key 1 must be a string, got int"),
        ({"params": ["a"]}, "params must be a mapping of name to value, got list ['a']"),
        ({"step": 2**63}, "step 9223372036854775808 is outside MLflow's 64-bit range"),
        ({"step": 1.5}, "step must be an integer, got float 1.5"),
    ],
)
def test_what_stores_cannot_hold_is_refused_first(hook, store, run_id, kwargs, message):
    with pytest.raises(MLflowInputError) as err:
        hook.log_batch(run_id, **{"params": {"good": 1}, **kwargs})
    assert message in str(err.value)
    assert store.client.get_run(run_id).data.params == {}


def test_metric_history_refuses_a_bad_step_before_writing(hook, store, run_id):
    with pytest.raises(MLflowInputError, match=r"metric 'loss': step must be an integer, got str 'x'"):
        hook.log_metric_history(run_id, "loss", [1.0, 2.0], steps=[0, "x"])
    assert store.client.get_metric_history(run_id, "loss") == []


def test_unicode_keys_pass_param_and_tag_validation():
    assert validate_tags({"ключ": 1}) == {"ключ": "1"}
    assert validate_params({"ключ": True}) == {"ключ": "True"}


def test_model_version_tags_take_registry_lengths(hook, store, run_id):
    store.client.create_registered_model("long-tags")
    store.client.create_model_version("long-tags", "file:///tmp/model", run_id=run_id)
    hook.set_version_tags("long-tags", "1", {"notes": "n" * 9000, "ключ": "v"})
    assert store.client.get_model_version("long-tags", "1").tags == {"notes": "n" * 9000, "ключ": "v"}
    with pytest.raises(MLflowInputError, match="model tag 'notes' value is 100001 characters"):
        hook.set_version_tags("long-tags", "1", {"a": "x", "notes": "n" * 100_001})
    assert "a" not in store.client.get_model_version("long-tags", "1").tags


# -- item 9: literals are checked when the DAG is parsed ---------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {"loss": float("nan")}}, "metric 'loss' must be finite, got nan"),
        ({"metrics": {"auc": math.inf}}, "metric 'auc' must be finite, got inf"),
        ({"metrics": {"acc": "high"}}, "metric 'acc' must be a number, got str 'high'"),
        ({"metrics": {"acc": None}}, "metric 'acc' must be a number, got NoneType None"),
        ({"metrics": {"flag": True}}, "metric 'flag' must be a number, got bool True"),
        ({"metrics": [1.0]}, "metrics must be a mapping of name to value, got list [1.0]"),
        ({"params": "lr=0.1"}, "params must be a mapping of name to value, got str 'lr=0.1'"),
        ({"tags": {("a",): 1}}, "tags: tag key ('a',) must be a string, got tuple"),
        ({"params": {"k" * 251: 1}}, "param key 'kkkk"),
        ({"params": {"text": "x" * 6001}}, "param 'text' value is 6001 characters; MLflow allows 6000"),
        ({"artifacts": 3}, "artifacts must be a path, a list of paths or a mapping"),
        ({"step": "3"}, "step must be an integer, got str '3'"),
        ({"tags": {"airflow.dag_id": "x"}}, "tags: tag key 'airflow.dag_id' is in the airflow.* namespace"),
    ],
)
def test_literal_values_fail_at_parse_time(kwargs, message):
    with pytest.raises(MLflowInputError) as err:
        MLflowLogOperator(task_id="log", **kwargs)
    assert message in str(err.value)


def test_register_refuses_tags_in_the_providers_namespace_at_parse_time():
    from airflow_mlflow import MLflowRegisterModelOperator

    with pytest.raises(MLflowInputError, match="tag key 'airflow.run_id' is in the airflow.. namespace"):
        MLflowRegisterModelOperator(task_id="r", model_uri="m:/1", name="m", tags={"airflow.run_id": "1"})


def test_a_rendered_tag_in_the_providers_namespace_fails_before_writing(store, airflow_db):
    dag_run = run(dags.provider_tag_log, tags={"airflow.role": "dag_run", "team": "a"})
    assert states(dag_run) == {"log": "failed"}
    assert_nothing_written(store, "provider_tag_log")


def test_non_finite_param_and_tag_literals_serialize_as_strict_json():
    """PostgreSQL's JSON refuses NaN/Infinity: the serialized DAG must not hold them."""
    import json

    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("non_finite_literals", schedule=None) as dag:
        op = MLflowLogOperator(
            task_id="log", params={"x": float("nan"), "n": 3}, tags={"y": float("-inf")}, metrics={"m": 1.5}
        )
    json.dumps(DagSerialization.to_dict(dag), allow_nan=False)
    assert op.mlflow_params == {"x": "nan", "n": 3} and op.tags == {"y": "-inf"}


def test_templated_values_wait_for_run_time():
    from airflow.sdk import DAG, task

    with DAG("templated_literals", schedule=None):

        @task
        def numbers() -> dict:
            return {"a": 1}

        op = MLflowLogOperator(
            task_id="log",
            params=numbers(),
            metrics={"best": "{{ ti.xcom_pull(task_ids='x') }}", "n": "3", "m": 2},
            tags="{{ dag_run.conf['tags'] }}",
            artifacts=["{{ ti.xcom_pull(task_ids='write') }}"],
        )
    assert op.metrics["n"] == "3"  # kept as given; converted at run time


def test_parse_time_checks_do_not_import_mlflow():
    code = textwrap.dedent(
        """
        import sys
        from airflow_mlflow import MLflowLogOperator
        from airflow_mlflow.exceptions import MLflowInputError
        MLflowLogOperator(task_id="ok", params={"ключ": 1}, metrics={"m": 1.5}, tags={"t": "v"})
        try:
            MLflowLogOperator(task_id="bad", metrics={"m": float("nan")})
        except MLflowInputError:
            pass
        else:
            raise SystemExit("nan accepted")
        heavy = [m for m in ("mlflow", "numpy", "pandas", "sklearn") if m in sys.modules]
        print(heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# -- item 13: a folder keeps its name -----------------------------------------------------------


def test_a_folder_lands_under_its_own_name(store, airflow_db, tmp_path):
    plots = tmp_path / "plots"
    (plots / "sub").mkdir(parents=True)
    (plots / "roc.png").write_text("roc")
    (plots / "sub" / "pr.png").write_text("pr")
    other = tmp_path / "more"
    other.mkdir()
    (other / "x.txt").write_text("x")
    report = tmp_path / "report.html"
    report.write_text("<p>")

    dag_run = run(
        dags.artifact_folders,
        as_list=[str(plots), str(report)],
        one_path=f"{plots}/",
        as_mapping={str(other): "figures", str(report): "docs", str(plots): None},
    )
    assert set(states(dag_run).values()) == {"success"}
    runs = task_runs(store, "artifact_folders")

    def tree(run_id, path=None):
        out = []
        for entry in store.client.list_artifacts(run_id, path):
            out += tree(run_id, entry.path) if entry.is_dir else [entry.path]
        return sorted(out)

    assert tree(runs["as_list"]) == ["plots/roc.png", "plots/sub/pr.png", "report.html"]
    assert tree(runs["one_path"]) == ["plots/roc.png", "plots/sub/pr.png"]
    assert tree(runs["as_mapping"]) == [
        "docs/report.html",
        "figures/x.txt",
        "plots/roc.png",
        "plots/sub/pr.png",
    ]


def test_a_file_an_artifact_server_would_refuse_fails_before_any_upload(store, airflow_db, tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "ok.png").write_text("ok")
    (plots / "bad#1.png").write_text("bad")
    dag_run = run(dags.artifact_refused, plots=[str(plots)])
    assert states(dag_run) == {"log": "failed"}
    assert_nothing_written(store, "artifact_refused")


# -- gate thresholds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"a//b": 0.5}, "thresholds: metric 'a//b' cannot be gated on"),
        ({"m" * 240: 0.5}, "cannot be gated on"),  # its airflow.gate.metric.<name> tag would be too long
        ({"acc": float("nan")}, "thresholds['acc'].threshold must be finite, got nan"),
        ({"acc": {"min_absolute_change": math.inf}}, "min_absolute_change must be finite, got inf"),
    ],
)
def test_thresholds_the_gate_could_never_decide_are_refused(thresholds, message):
    from airflow_mlflow.gate import parse_thresholds

    with pytest.raises(MLflowInputError) as err:
        parse_thresholds(thresholds)
    assert message in str(err.value)


def test_unicode_threshold_names_are_accepted():
    from airflow_mlflow.gate import parse_thresholds

    assert list(parse_thresholds({"точность": 0.5})) == ["точность"]
