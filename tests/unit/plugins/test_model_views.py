"""What the registry pages show, read through ``MLflowHook`` from a real SQLite store that real
DAG runs filled (see conftest): versions, gate verdicts, champion, history and chart points."""

from __future__ import annotations

import re

import pytest

from airflow_mlflow import tags
from airflow_mlflow.champion import Change, history_tag
from airflow_mlflow.hooks.mlflow import MLflowHook
from airflow_mlflow.plugins import chart, model_views, rendering
from tests.unit.plugins.conftest import HOSTILE_COMMENT, everyone

ESCAPED_COMMENT = "&lt;script&gt;alert(1)&lt;/script&gt; ship it"


def text(html: str) -> str:
    """What a reader sees: the markup's text, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def row(page: str, attribute: str) -> str:
    """The table row that opens with ``<tr <attribute>``."""
    start = page.index(f"<tr {attribute}")
    return page[start : page.index("</tr>", start)]


def test_models_view_respects_dag_permissions(lifecycle):
    hook = MLflowHook()
    [summary] = model_views.models_view(hook, everyone)
    assert summary.model.name == "gate_model"
    assert [v.version for v in summary.versions] == ["3", "2", "1"]
    assert summary.champion.version == "3" and summary.dags == ["gate_lifecycle"]
    assert model_views.models_view(hook, lambda dag_id: dag_id != "gate_lifecycle") == []
    assert model_views.model_view(hook, "gate_model", lambda dag_id: False) is None


def test_model_view_charts_one_point_per_dag_run_with_gate_and_champion(lifecycle):
    view = model_views.model_view(MLflowHook(), "gate_model", everyone)
    assert view.metric == "accuracy"  # the gate's metric
    assert [(p.version, p.value, p.gate, p.promoted, p.champion) for p in view.points] == [
        ("1", pytest.approx(0.8), "passed", True, False),
        ("2", pytest.approx(0.7), "rejected", False, False),
        ("3", pytest.approx(0.9), "passed", True, True),
    ]
    assert [v.outcome for v in view.versions] == [
        "champion",
        "rejected by the gate",
        "promoted, since replaced",
    ]
    assert [(e.action, e.version, e.previous) for e in view.history] == [
        ("promote", "3", "1"),
        ("promote", "1", None),
    ]

    svg = str(rendering.macro("_chart.html", "model_chart")(chart.model_chart(view.points, view.metric)))
    assert re.findall(r'data-version="(\d+)" data-gate="(\w+)"', svg) == [
        ("1", "passed"),
        ("2", "rejected"),
        ("3", "passed"),
    ]
    assert svg.count("★ champion") == 1 and svg.count('class="ring"') == 2


def test_model_view_falls_back_to_another_metric_and_unknown_model(lifecycle):
    hook = MLflowHook()
    assert model_views.model_view(hook, "no_such_model", everyone) is None
    assert model_views.model_view(hook, "gate_model", everyone, metric="nonexistent").metric == "accuracy"


@pytest.mark.filterwarnings("ignore:.*transition_model_version_stage.*:FutureWarning")
def test_the_champion_is_who_the_promotion_model_says_and_history_shows_readable_dags(store):
    """A DAG that promotes to another alias: the UI agrees with it (it used to look for
    ``champion`` / ``Production`` only), and a change made by an unreadable DAG stays hidden."""
    client = store.client
    client.create_registered_model("fraud")
    for day in (1, 2):
        lineage = {tags.DAG_ID: "retrain", tags.RUN_ID: f"day{day}"}
        client.create_model_version("fraud", "s3://bucket/fraud", tags=lineage)
    client.set_registered_model_alias("fraud", "champion", "1")  # left over from before
    client.transition_model_version_stage("fraud", "1", "Production")
    client.set_registered_model_alias("fraud", "prod", "2")
    first = Change(0, "promote", "1", None, "2026-11-01T00:00:00Z", "retrain/day1", "passed", alias="prod")
    second = Change(1, "promote", "2", "1", "2026-11-02T00:00:00Z", "ops/manual", "passed", alias="prod")
    history = history_tag([first], second)
    client.set_registered_model_tag("fraud", tags.CHAMPION_HISTORY, history[tags.CHAMPION_HISTORY])

    hook = MLflowHook()
    readable = lambda dag_id: dag_id != "ops"  # noqa: E731
    view = model_views.model_view(hook, "fraud", readable)
    assert [(v.version, v.champion) for v in view.versions] == [("2", True), ("1", False)]
    assert view.champion.version == "2"
    assert view.history == [first]
    [summary] = model_views.models_view(hook, readable)
    assert summary.champion.version == "2" and summary.latest_gate == "not gated"
    versions = model_views.dag_run_versions(hook, "retrain", "day2", [])
    assert [(v.version, v.champion) for v in versions] == [("2", True)]


def test_a_model_gated_on_evaluations_is_charted_by_the_evaluated_metric(store):
    """Gated with source="evaluation": the chart and the column show the holdout numbers the
    verdicts are about, beside each run's own metrics (still a chip away)."""
    import json

    from airflow_mlflow.gate import MetricCheck, Verdict

    client = store.client
    exp = client.create_experiment("churn_training", artifact_location=store.artifact_root.as_uri())
    client.create_registered_model("churn")
    champion = None
    for day, (own, holdout, verdict) in enumerate(((0.90, 0.80, "passed"), (0.95, 0.75, "rejected")), 1):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "accuracy", own)
        lineage = {tags.DAG_ID: "retrain", tags.RUN_ID: f"day{day}"}
        client.create_model_version("churn", f"file:///tmp/churn/{day}", run_id=run.info.run_id, tags=lineage)
        record = {"dataset": {"name": "holdout", "digest": "d1"}, "metrics": {"accuracy_score": holdout}}
        client.set_model_version_tag("churn", str(day), tags.EVALUATION, json.dumps(record))
        check = MetricCheck("accuracy_score", holdout, champion, ">= 0.7", verdict)
        for key, value in Verdict("churn", str(day), None, verdict, (check,)).version_tags("r").items():
            client.set_model_version_tag("churn", str(day), key, value)
        champion = holdout

    view = model_views.model_view(MLflowHook(), "churn", everyone)
    assert view.metric == "accuracy_score" and "accuracy" in view.metrics
    assert [(p.version, p.value) for p in view.points] == [("1", 0.80), ("2", 0.75)]
    assert model_views.model_view(MLflowHook(), "churn", everyone, metric="accuracy").points[1].value == 0.95


def test_the_model_page_shows_each_decision_beside_the_gate_and_in_the_history(approvals):
    view = model_views.model_view(approvals, "churn", everyone)
    assert [(v.version, v.gate, v.approval and v.approval.summary, v.outcome) for v in view.versions] == [
        ("4", "passed", "rejected (no answer in time)", "rejected (no answer in time)"),
        ("3", "passed", "rejected by bob", "rejected by bob"),
        ("2", "passed", "approved by alice", "champion"),
        ("1", "passed", None, "promoted, since replaced"),
    ]
    assert view.versions[2].approval.comment == HOSTILE_COMMENT  # whole, from the version
    rows = [(c.version, d and (d.summary, d.at, d.comment)) for c, d in view.history_rows]
    assert rows == [
        ("2", ("approved by alice", "2026-12-02T09:30:00+00:00", HOSTILE_COMMENT)),
        ("1", None),
    ]

    page = rendering.render("model.html", view=view, chart=None, selected=None, conn_id="mlflow_default")
    assert "<script>" not in page and page.count(ESCAPED_COMMENT) == 2  # the version, the history
    approved = row(page, 'data-version="2"')
    assert 'data-approval="approved"' in approved and 'class="badge approved">approved by alice<' in approved
    assert "approved by alice 2026-12-02T09:30:00+00:00" in text(approved)
    rejected = row(page, 'data-version="3"')
    assert 'data-approval="rejected"' in rejected and 'class="badge rejected">rejected by bob<' in rejected
    assert "rejected by bob" in text(rejected) and "drifted on the March data" in text(rejected)
    timed_out = row(page, 'data-version="4"')
    assert 'class="badge rejected">rejected (no answer in time)<' in timed_out
    unasked = row(page, 'data-version="1"')
    assert "data-approval" not in unasked and "approval" not in text(unasked)

    promoted_after_approval = row(page, 'data-seq="1"')
    assert "approved by alice" in text(promoted_after_approval)
    assert ESCAPED_COMMENT in promoted_after_approval
    assert 'class="approval' not in row(page, 'data-seq="0"')
