"""No secret anywhere: the MLflow password of the stack's connections is looked for in everything
a user, an operator or another team can see, after DAG runs that track, register, defer a gate
in the triggerer and fail (so errors are rendered), and after an MLflow page that failed.

The password is in ``mlflow_default`` as the connection's password, and inside the
``tracking_uri`` of ``mlflow_uri`` (which the API server's MLflow views use) and of ``mlflow_down``
(a closed port: its task and its DAG-run finalization fail with the URI in MLflow's error). All
three live in the metadata DB only. Places searched, each must have zero hits:

* every file under the stack's folder (Airflow's task logs, each component's log);
* task logs, XCom values and rendered template fields through the REST API;
* MLflow: experiment tags, every run's params/tags/notes, logged models, registered models and
  model versions, and the server's artifact files;
* the HTML of every MLflow page of the plugin (dag-run, task, models, model), and its error page;
* ``/proc/<pid>/environ`` and command lines of every process of the scheduler, the triggerer, the
  API server and the dag-processor.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path

import pytest
import requests

from tests.faults.conftest import BOT_USER, raw_task_log
from tests.faults.dags import SECRET_MODEL

DAG_ID = "faults_secrets"
EXPECTED_STATES = {
    "train": "success",
    "register": "success",
    "gate": "skipped",  # timed out waiting for a metric that never comes, soft_fail
    "track_on_uri": "success",
    "log_on_uri": "success",
    "unreachable": "failed",
    "user_error": "failed",
}


class Finder:
    """Looks for the secret (as is, and as a basic-auth header) in texts; remembers where."""

    def __init__(self, secret: str) -> None:
        self.needles = [secret.encode(), base64.b64encode(f"{BOT_USER}:{secret}".encode())]
        self.hits: list[str] = []
        self.searched: dict[str, int] = {}

    def search(self, kind: str, where: str, data: str | bytes) -> None:
        raw = data.encode(errors="replace") if isinstance(data, str) else data
        self.searched[kind] = self.searched.get(kind, 0) + 1
        for needle in self.needles:
            at = raw.find(needle)
            if at >= 0:
                context = raw[max(0, at - 120) : at + len(needle) + 40].replace(needle, b"<SECRET>")
                self.hits.append(f"{kind} {where}: ...{context.decode(errors='replace')}...")


def _files(folders: Iterable[Path]) -> Iterable[Path]:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                yield path


def _all_tis(stack, run_id: str) -> list[dict]:
    return stack.task_instances(DAG_ID, run_id)


@pytest.mark.timeout(360)
def test_the_password_is_nowhere_to_be_seen(faults, calm_runs):
    stack, client = faults.stack, faults.client
    find = Finder(faults.password)
    run_id = calm_runs[DAG_ID]  # started beside test_kills.py's DAG run, at the session's calm start
    assert stack.wait(DAG_ID, run_id, timeout=240) == "failed", stack.describe_failure(DAG_ID, run_id)
    tis = {t["task_id"]: t for t in _all_tis(stack, run_id)}
    assert {k: t["state"] for k, t in tis.items()} == EXPECTED_STATES, stack.describe_failure(DAG_ID, run_id)

    # -- Airflow, through the REST API: logs of every try, XCom values, rendered fields.
    logs = {}
    for task_id, ti in tis.items():
        for try_number in range(1, max(ti["try_number"], 1) + 1):
            logs[(task_id, try_number)] = log = raw_task_log(stack, DAG_ID, run_id, task_id, try_number)
            find.search("task log (REST)", f"{task_id} try {try_number}", log)
        find.search("rendered fields (REST)", task_id, json.dumps(ti.get("rendered_fields")))
        entries = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries")
        for entry in entries["xcom_entries"]:
            value = stack.api(
                "GET",
                f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{entry['key']}",
                params={"map_index": entry["map_index"]},
            )
            find.search("XCom (REST)", f"{task_id} {entry['key']}", json.dumps(value))
    # Not vacuous: the failures were rendered, the gate went through the triggerer.
    assert f"{faults.info.host}:{faults.down_port}" in logs[("unreachable", 1)], logs[("unreachable", 1)][
        -2000:
    ]
    assert "bad input data" in logs[("user_error", 1)]
    assert "Pausing task as DEFERRED" in logs[("gate", 1)], logs[("gate", 1)][-2000:]
    assert find.searched["XCom (REST)"] >= 4

    # -- The plugin's MLflow pages (read through mlflow_uri), as a logged-in user.
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {stack.token()}"
    pages = [f"dag-run?dag_id={DAG_ID}&run_id={run_id}", "models", f"model?name={SECRET_MODEL}"]
    pages += [f"task?dag_id={DAG_ID}&run_id={run_id}&task_id={task_id}" for task_id in tis]
    for page in pages:
        resp = http.get(f"{stack.url}/mlflow/{page}", timeout=60)
        find.search("UI page", page, resp.text)
        assert resp.status_code == 200, (page, resp.status_code, resp.text[:1000])
    assert SECRET_MODEL in http.get(f"{stack.url}/mlflow/models", timeout=60).text
    # ... and its error page, while MLflow does not answer.
    faults.server.pause()
    try:
        resp = http.get(f"{stack.url}/mlflow/models", timeout=120)
    finally:
        faults.server.resume()
    find.search("UI error page", "models (MLflow paused)", resp.text)
    assert resp.status_code >= 500, (resp.status_code, resp.text[:1000])

    # -- MLflow: everything the runs, models and versions carry, and the artifact files.
    from mlflow.entities import ViewType

    experiments = client.search_experiments(view_type=ViewType.ALL)
    for exp in experiments:
        find.search("MLflow experiment", exp.name, json.dumps(exp.tags))
    exp_ids = [e.experiment_id for e in experiments]
    runs = client.search_runs(exp_ids, run_view_type=ViewType.ALL, max_results=5000)
    for run in runs:
        find.search("MLflow run", f"{run.info.run_name} ({run.info.run_id})", json.dumps(run.to_dictionary()))
    assert {"train", "track_on_uri", "log_on_uri", "user_error"} <= {r.info.run_name for r in runs}
    for model in client.search_logged_models(exp_ids):
        find.search("MLflow logged model", model.model_id, json.dumps(model.to_dictionary(), default=str))
    models = client.search_registered_models()
    assert SECRET_MODEL in {m.name for m in models}
    for model in models:
        find.search("MLflow registered model", model.name, repr(dict(model)))
        for version in client.search_model_versions(f"name = '{model.name}'"):
            find.search("MLflow model version", f"{model.name} v{version.version}", repr(dict(version)))
    for path in _files([faults.server.artifacts_dir]):
        find.search("MLflow artifact", str(path), path.read_bytes())

    # -- Files of the stack: Airflow's task logs and every component's log (scheduler included,
    # where the finalization of mlflow_down's run fails with the URI in MLflow's error), and the
    # logs of whatever else ran in this session (outages, kills) when the whole tier runs.
    for path in _files([stack.workdir]):
        find.search("file", str(path.relative_to(stack.workdir)), path.read_bytes())

    # -- The environment and command line of every process of the shared components.
    for component in ("scheduler", "triggerer", "api-server", "dag-processor"):
        for pid in stack.pids(component):
            for name in ("environ", "cmdline"):
                try:
                    data = Path(f"/proc/{pid}/{name}").read_bytes()
                except OSError:
                    continue  # exited meanwhile
                find.search(f"/proc {name}", f"{component} pid {pid}", data)

    print(f"\n[faults] searched for the password: {find.searched}")
    assert not find.hits, f"the password leaked in {len(find.hits)} place(s):\n" + "\n".join(find.hits)


def test_the_secret_check_finds_a_planted_password():
    """The finder itself: a search that can never hit would prove nothing."""
    find = Finder("s3cret-Pa55word")
    find.search("x", "plain", "... http://airflow-bot:s3cret-Pa55word@host ...")
    find.search("x", "header", b"Authorization: Basic " + base64.b64encode(b"airflow-bot:s3cret-Pa55word"))
    find.search("x", "clean", "http://host:5000")
    assert [hit.split(":")[0] for hit in find.hits] == ["x plain", "x header"]
    assert all("s3cret" not in hit for hit in find.hits)
