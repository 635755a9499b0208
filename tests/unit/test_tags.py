"""The tag vocabulary lives in one module: no other code spells an ``airflow.*`` tag key."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from airflow_mlflow import tags

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "provider" / "airflow_mlflow"
CHECKED = [
    *(p for p in PACKAGE.rglob("*.py") if p.name != "tags.py"),
    *(ROOT / "dags_examples").glob("*.py"),
]
TEMPLATES = sorted(PACKAGE.rglob("templates/*.html"))


def _is_module_path(text: str) -> bool:
    """``airflow.sdk…``, ``airflow.models…``: a module of Airflow, not a tag key."""
    first = text.split(".")[1]
    return first.isidentifier() and importlib.util.find_spec(f"airflow.{first}") is not None


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def tag_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant or f-string that starts an ``airflow.<tag>`` key."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            head = node.values[0] if node.values else None
            text = head.value if isinstance(head, ast.Constant) and isinstance(head.value, str) else ""
            if text.startswith("airflow.") and not (text.count(".") > 1 and _is_module_path(text)):
                hits.append((node.lineno, text + "{…}"))
            skip.update(id(v) for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            if text.startswith("airflow.") and len(text) > len("airflow.") and not _is_module_path(text):
                hits.append((node.lineno, text))
    return sorted(hits)


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_tag_key_is_spelled_outside_the_tag_module(path):
    hits = tag_literals(path.read_text())
    assert not hits, f"{path.relative_to(ROOT)}: use airflow_mlflow.tags instead of {hits}"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_templates_get_tag_keys_from_python(path):
    assert not re.findall(r"""["']airflow\.[a-z_{]""", path.read_text())


def test_the_check_catches_literals_and_f_strings_but_not_modules_or_docs():
    source = (
        '"""Writes ``airflow.dag_id``."""\n'
        'a = {"airflow.dag_id": 1}\n'
        'b = f"airflow.try.{n}.state"\n'
        'c = "airflow.sdk.execution_time.task_runner"\n'
        'd = f"airflow.models.{name}"\n'
    )
    assert tag_literals(source) == [(2, "airflow.dag_id"), (3, "airflow.try.{…}")]


def test_every_key_is_defined_once():
    keys = [v for k, v in vars(tags).items() if k.isupper() and str(v).startswith("airflow.")]
    assert len(keys) == len(set(keys)) and len(keys) > 20


def test_try_tags_round_trip():
    assert tags.parse_try_tag(tags.try_tag(3, "state")) == (3, "state")
    assert tags.parse_try_tag("airflow.try.x.state") is None
    assert tags.parse_try_tag("airflow.try.2.unknown") is None
    recorded = {tags.try_tag(2, "end"): "1", tags.try_tag(1, "state"): "ok", "other": ""}
    assert tags.try_numbers(recorded) == [1, 2]
