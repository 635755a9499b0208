"""The README's Python blocks run as written, so the docs cannot drift from the code.

Every ```python block of ``README.md`` is taken literally, as a user would copy it:

* a block that defines DAGs is a DAG file. All of them go into the DAGs folder of one fresh
  AIRFLOW_HOME with no MLflow connection (the embedded store, as on a new machine), and each DAG
  runs with ``airflow dags test``, in README order: every task instance must succeed and every
  MLflow run end FINISHED;
* any other block runs as a script (``python block.py``) in a fresh AIRFLOW_HOME.

A block right after an HTML comment ``<!-- not-run: reason -->`` is only compiled; the README
shows the comment to a reviewer, and the reason must be given.
"""

from __future__ import annotations

import ast
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FENCE = re.compile(r"```(?:python|py)(?:\s.*)?")
NOT_RUN = re.compile(r"<!--\s*not-run:(.*?)-->")


@dataclass(frozen=True)
class Block:
    line: int  # the opening fence's line in the README
    code: str
    not_run: str | None  # the reason given, when the block is only compiled

    def __str__(self) -> str:
        return f"README.md:{self.line}"


def python_blocks(text: str) -> list[Block]:
    """The fenced Python blocks of a Markdown text, each with a ``not-run`` reason if it has one."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if not FENCE.fullmatch(lines[i].strip()):
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        marked = NOT_RUN.fullmatch(before)
        blocks.append(Block(i + 1, "\n".join(lines[i + 1 : end]) + "\n", marked and marked.group(1).strip()))
        i = end + 1
    return blocks


def dag_ids(code: str) -> list[str]:
    """The DAG ids a block defines, in source order: ``@dag`` functions and ``DAG(...)`` calls."""

    def is_named(node: ast.AST, name: str) -> bool:
        target = node.func if isinstance(node, ast.Call) else node
        return (isinstance(target, ast.Name) and target.id == name) or (
            isinstance(target, ast.Attribute) and target.attr == name
        )

    def given_id(call: ast.AST) -> str | None:
        if not isinstance(call, ast.Call):
            return None
        args = [kw.value for kw in call.keywords if kw.arg == "dag_id"] or call.args[:1]
        return args[0].value if args and isinstance(args[0], ast.Constant) else None

    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if is_named(decorator, "dag"):
                    found.append((node.lineno, given_id(decorator) or node.name))
        elif isinstance(node, ast.Call) and is_named(node, "DAG"):
            found.append((node.lineno, given_id(node)))
    return [dag_id for _, dag_id in sorted(found)]


BLOCKS = python_blocks(README.read_text())
RUNNABLE = [b for b in BLOCKS if b.not_run is None]
DAG_BLOCKS = [b for b in RUNNABLE if dag_ids(b.code)]
SCRIPT_BLOCKS = [b for b in RUNNABLE if not dag_ids(b.code)]


def fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """A new machine: no Airflow settings, connections or MLflow variables from this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "MLFLOW_"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False", **extra)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path, what: str) -> None:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def test_the_readme_has_blocks_of_each_kind_and_every_exception_says_why():
    assert DAG_BLOCKS, "the README shows no complete DAG"
    assert SCRIPT_BLOCKS
    for block in BLOCKS:
        compile(block.code, str(block), "exec")
        assert block.not_run != "", f"{block}: not-run needs a reason"
    assert len([b for b in BLOCKS if b.not_run]) <= 1, "keep not-run blocks rare"


def test_extraction_finds_fences_markers_and_dag_ids():
    text = (
        "intro\n```python\nx = 1\n```\n\n<!-- not-run: a fragment -->\n\n```python title\ny(\n```\n"
        "```bash\nmake\n```\n```py\nfrom airflow.sdk import DAG, dag\n\n@dag(dag_id='b')\ndef a(): ...\n"
        "@dag\ndef c(): ...\nDAG('d')\nDAG(dag_id='e')\n```\n"
    )
    first, second, third = python_blocks(text)
    assert (first.line, first.code, first.not_run) == (2, "x = 1\n", None)
    assert (second.line, second.not_run) == (8, "a fragment")
    assert dag_ids(first.code) == [] and dag_ids(third.code) == ["b", "c", "d", "e"]


@pytest.mark.parametrize("block", SCRIPT_BLOCKS, ids=str)
def test_script_block_runs(block, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(block.code)
    run([sys.executable, str(script)], fresh_env(tmp_path / "home"), tmp_path, f"{block} (python)")


@pytest.mark.timeout(1200)
def test_dag_blocks_run_under_airflow_dags_test_on_the_embedded_store(tmp_path):
    from airflow.dag_processing.dagbag import DagBag
    from mlflow import MlflowClient

    home, dags = tmp_path / "home", tmp_path / "dags"
    dags.mkdir()
    order = []
    for block in DAG_BLOCKS:
        path = dags / f"readme_{block.line}.py"
        path.write_text(block.code)
        bag = DagBag(dag_folder=str(path), safe_mode=False)
        assert not bag.import_errors, f"{block}: {bag.import_errors}"
        assert sorted(bag.dag_ids) == sorted(dag_ids(block.code)), block
        order += [(block, dag_id) for dag_id in dag_ids(block.code)]

    env = fresh_env(home, AIRFLOW__CORE__DAGS_FOLDER=str(dags))
    run([AIRFLOW, "db", "migrate"], env, tmp_path, "airflow db migrate")
    metadata = sqlite3.connect(home / "airflow.db")
    for block, dag_id in order:
        run([AIRFLOW, "dags", "test", dag_id], env, tmp_path, f"{block}: airflow dags test {dag_id}")
        states = metadata.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (dag_id,))
        states = sorted(states.fetchall())
        assert states and all(state == "success" for _, state in states), f"{block}, {dag_id}: {states}"

    client = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    statuses = sorted((r.info.run_name, r.info.status) for r in runs)
    assert statuses and {status for _, status in statuses} == {"FINISHED"}, statuses
