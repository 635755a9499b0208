"""MLflow's search syntax and paging: filter literals, a model-name filter, every page of a search."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlflow.exceptions import MLflowInputError

if TYPE_CHECKING:
    from collections.abc import Callable


def all_pages(search: Callable[[str | None], Any]) -> list:
    """Every item of a paged MLflow search: ``search(page_token)`` until no token comes back."""
    found, token = [], None
    while True:
        page = search(token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def filter_literal(value: str) -> str:
    """
    ``value`` as a string literal of MLflow's search filters. They know no escapes (MLflow strips
    the outer quotes and keeps the rest), but take single or double quotes: a value holding a
    single quote goes in double quotes. One holding both cannot be written: refused.
    """
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise MLflowInputError(f"value {value!r} cannot be searched: it contains both kinds of quote")


def name_filter(name: str) -> str:
    """
    A search filter matching model ``name`` (any name MLflow stores): ``name = …``, or for a name
    holding both kinds of quote, which no literal can carry, a ``LIKE`` pattern with every quote,
    wildcard and backslash (PostgreSQL's LIKE escape) as ``_``. The caller keeps exact matches.
    """
    if "'" in name and '"' in name:
        pattern = "".join("_" if c in "'\"%_\\" else c for c in name)
        return f"name LIKE '{pattern}'"
    return f"name = {filter_literal(name)}"
