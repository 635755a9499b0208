"""The plugin's MLflow views in a real browser (Debian's headless Chromium, driven by Playwright)
against the stack's real API server, logged in through the simple auth manager's login page.

The stack runs in multi-team mode with its DAGs folder owned by a team (see ``_airflow.py``):
``analyst`` is a viewer in that team, ``outsider`` a viewer in another. Screenshots of every page
go to ``tests/output/ui/<mode>/`` (the README shows a set of them).

The retraining example's three days come from ``test_retrain_e2e`` when it ran before on this
stack, else this module runs them: v1 promoted, v2 rejected, v3 promoted over v1.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import requests

from tests.e2e.test_retrain_e2e import DAG_ID, DAYS, MODEL


def test_analyst_follows_a_retraining_run_from_dag_run_to_model_chart(airflow_stack, retrained, session):
    stack = airflow_stack
    client = stack.mlflow_client()
    analyst = session("analyst")
    day3 = quote(retrained[DAYS[2]], safe="")

    # The DAG run's MLflow tab: every tracked task's run, its params and metrics, and the version.
    analyst.open(f"dags/{DAG_ID}/runs/{day3}/plugin/mlflow-dag-run")
    view = analyst.frame("MLflow")
    view.get_by_role("heading", name="MLflow runs of this DAG run").wait_for()
    train = view.locator('section.task[data-task="train"]')
    train.wait_for()
    experiment = client.get_experiment_by_name(DAG_ID)
    [run] = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`airflow.run_id` = '{retrained[DAYS[2]]}' and tags.`airflow.task_id` = 'train'",
    )
    metrics = train.locator("table.metrics").inner_text()
    for key, value in run.data.metrics.items():
        assert re.search(rf"{key}\s+{re.escape(f'{value:.6g}')}", metrics), (key, value, metrics)
    assert "label_noise" in train.locator("table.params").inner_text()
    assert "evaluation/metrics.json" in train.inner_text()
    version_row = view.locator('table.versions tr[data-version="3"]')
    assert "passed" in version_row.inner_text() and "champion" in version_row.inner_text()
    analyst.shot("1-dag-run")
    # Artifacts open inside the frame: the embedded store has no UI of its own to show them.
    train.get_by_role("link", name="evaluation/metrics.json").click()
    view.get_by_text('"accuracy"').first.wait_for()

    # The train task's tab: its MLflow 3 logged model beside the run's artifacts (its files are
    # not among them).
    analyst.open(f"dags/{DAG_ID}/runs/{day3}/tasks/train/plugin/mlflow-task")
    logged = analyst.frame("MLflow").locator("table.logged-models tr[data-model-id]")
    logged.first.wait_for()
    (model,) = client.search_logged_models(
        [experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert logged.count() == 1 and logged.get_attribute("data-model-id") == model.model_id
    row = logged.inner_text()
    assert row.startswith("model") and "sklearn" in row and f"models:/{model.model_id}" in row
    if stack.mlflow_server_url:
        link = logged.get_by_role("link", name="model").get_attribute("href")
        assert link.startswith(f"{stack.mlflow_server_url}/#/experiments/"), link
    logged.first.scroll_into_view_if_needed()
    analyst.shot("1b-task-logged-model")

    # The gate's tab on the rejected day: why version 2 was not promoted.
    day2 = quote(retrained[DAYS[1]], safe="")
    analyst.open(f"dags/{DAG_ID}/runs/{day2}/tasks/gate/plugin/mlflow-task")
    gate = analyst.frame("MLflow").locator('table.versions tr[data-version="2"]')
    gate.wait_for()
    assert "rejected by the gate" in gate.inner_text()
    assert re.search(
        r"accuracy_score: candidate [\d.]+, required >= 0.85 and >= baseline\+0.005", gate.inner_text()
    )
    analyst.shot("2-gate-rejected")

    # The models page in the navigation, then the model's chart: one point per DAG run.
    analyst.open("plugin/mlflow-models")
    models = analyst.frame("MLflow models")
    row = models.locator(f'tr[data-model="{MODEL}"]')
    assert "v3" in row.inner_text() and "champion" in row.inner_text()
    analyst.shot("3-models")
    row.get_by_role("link", name=MODEL).click()
    points = models.locator("svg.chart g.point")
    points.first.wait_for()
    assert [(p.get_attribute("data-version"), p.get_attribute("data-gate")) for p in points.all()] == [
        ("1", "passed"),
        ("2", "rejected"),
        ("3", "passed"),
    ]
    assert models.locator("svg.chart g.point.champion").get_attribute("data-version") == "3"
    history = models.locator("table.history").inner_text()
    assert re.search(r"promote\s+v3\s+v1", history) and re.search(r"promote\s+v1\s+none", history)
    analyst.shot("4-model-chart")


def test_extra_links_lead_to_the_plugin_view_or_mlflow_ui(airflow_stack, retrained, session):
    stack = airflow_stack
    analyst = session("analyst")
    day3 = quote(retrained[DAYS[2]], safe="")
    # Extra links are on a task instance's Details tab.
    page = analyst.open(f"dags/{DAG_ID}/runs/{day3}/tasks/train/details")
    link = page.get_by_role("link", name="MLflow Run")
    href = link.get_attribute("href")
    if stack.mlflow_server_url:
        # A server has a UI of its own: the link leads there, in a new tab.
        assert href.startswith(f"{stack.mlflow_server_url}/#/experiments/"), href
        page.goto(href)
        page.get_by_text("accuracy").first.wait_for()
        analyst.shot("5-extra-link-mlflow-ui")
    else:
        assert href.endswith(f"dags/{DAG_ID}/runs/{day3}/tasks/train/plugin/mlflow-task"), href
        link.click()
        page.wait_for_url(re.compile(r"/plugin/mlflow-task$"))
        analyst.frame("MLflow").get_by_role("heading", name=re.compile("train")).wait_for()
        analyst.shot("5-extra-link-task-view")

    page = analyst.open(f"dags/{DAG_ID}/runs/{day3}/tasks/register/details")
    href = page.get_by_role("link", name="MLflow Model Version").get_attribute("href")
    if stack.mlflow_server_url:
        assert href == f"{stack.mlflow_server_url}/#/models/{MODEL}/versions/3", href
    else:
        assert href == f"plugin/mlflow-models/mlflow/model?name={MODEL}&version=3", href
        page.get_by_role("link", name="MLflow Model Version").click()
        selected = analyst.frame("MLflow models").locator("table.versions tr.selected")
        assert selected.get_attribute("data-version") == "3"
        analyst.shot("6-extra-link-model-version")


def test_a_user_without_access_to_the_dag_is_refused(airflow_stack, retrained, session):
    stack = airflow_stack
    outsider = session("outsider")
    day3 = quote(retrained[DAYS[2]], safe="")
    request = outsider.context.request  # carries the outsider's session cookie

    refused = request.get(f"{stack.url}/mlflow/dag-run?dag_id={DAG_ID}&run_id={day3}")
    assert refused.status == 403, refused.text()
    assert f"You may not read DAG {DAG_ID}:" in refused.text()
    assert "breast_cancer" not in refused.text() and "accuracy" not in refused.text()
    refused = request.get(f"{stack.url}/mlflow/task?dag_id={DAG_ID}&run_id={day3}&task_id=train")
    assert refused.status == 403, refused.text()
    # The registry pages list nothing from DAGs the user may not read.
    models = request.get(f"{stack.url}/mlflow/models")
    assert models.status == 200 and MODEL not in models.text()
    assert request.get(f"{stack.url}/mlflow/model?name={MODEL}").status == 404

    outsider.open("plugin/mlflow-models")
    outsider.frame("MLflow models").get_by_text("No registered models yet.").wait_for()
    outsider.shot("7-outsider-models")
    # The DAG run's MLflow tab, as the Airflow UI would frame it for them.
    outsider.open(f"dags/{DAG_ID}/runs/{day3}/plugin/mlflow-dag-run")
    outsider.frame("MLflow").get_by_text(f"You may not read DAG {DAG_ID}:").wait_for()
    outsider.shot("8-outsider-refused")

    # Without a login at all.
    anonymous = requests.get(f"{stack.url}/mlflow/models", timeout=30)
    assert anonymous.status_code == 401
