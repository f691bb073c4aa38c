"""Suite problems as messages: ``SuiteError``, and pydantic's validation errors as one line per problem.

Each line reads ``field.path: what is wrong (got value); how to fix it``, with the path in the suite
file's terms (``arms[1].peak_lrs[0]``), so a suite with several mistakes is fixed in one edit; a problem
that a ``--set`` caused reads ``--set key=value: ...``, the override as typed.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

from pydantic import BaseModel, ValidationError

from autowu_bench.platform.suite.schema import ARM_KINDS, PROBLEMS_BELOW, Suite


class SuiteError(ValueError):
    """A suite that cannot run; ``problems`` lists every problem, one line each (field: what, fix)."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")


_FIX = {
    "missing": "add it",
    "extra_forbidden": "remove it or fix its spelling",
    "union_tag_invalid": "set kind to 'autowu' or 'baseline'",
    "union_tag_not_found": "add kind: autowu or kind: baseline",
    "string_pattern_mismatch": "use letters, digits, '-' and '_' only",
}


def validation_problems(error: ValidationError, raw: Any, overrides: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem in ``error`` (from validating the mapping ``raw`` as a ``Suite``).

    ``overrides``: where each ``--set`` landed (``overrides.apply_overrides``); a problem at or below one
    is named by that ``--set`` as typed (``--set arms.baseline.peak_lr=0.1: ...``), not by the file's path.
    """
    overrides = overrides or {}
    problems = []
    for item in error.errors():
        path = field_path(item["loc"], raw)
        if item["type"] == PROBLEMS_BELOW:  # schema.problems_below: (subpath, message) pairs, as data
            for subpath, line in item["ctx"]["problems"]:
                below = path + ("" if subpath.startswith("[") else ".") + subpath
                problems.append(f"{_named(below, overrides)}: {line}")
            continue
        where = _named(path, overrides)
        if item["type"] == "value_error":
            for line in str(item["msg"]).removeprefix("Value error, ").split("\n"):
                if isinstance(item.get("input"), (int, float, str)):
                    problems.append(f"{where}: {line} (got {item['input']!r})")
                else:
                    problems.append(f"{where}: {line}")
            continue
        message = item["msg"]
        if item["type"] != "missing":
            message += f" (got {item.get('input')!r})"
        fix = _FIX.get(item["type"])
        if item["type"] == "extra_forbidden":
            allowed = _allowed_fields(item["loc"], raw)
            if where != path:  # a key typed after --set: nothing to remove from the file
                close = difflib.get_close_matches(str(item["loc"][-1]), allowed, n=1)
                message = f"no such field {item['loc'][-1]!r} (got {item.get('input')!r})"
                fix = "fix the key" + (f" (did you mean {close[0]!r}?)" if close else "")
            fix = f"{fix}; allowed: {allowed}" if allowed else fix
        problems.append(f"{where}: {message}" + (f"; {fix}" if fix else ""))
    return problems


def blames_overrides(problem: str) -> bool:
    """Whether a line of :func:`validation_problems` names a ``--set`` (not the suite file)."""
    return problem.startswith("--set ")


def _named(path: str, overrides: Mapping[str, str]) -> str:
    """``path``, or the ``--set`` that put the value there (the deepest one holding it) and the field
    below it: ``arms[1].peak_lrs[0]`` -> ``--set arms.baseline.peak_lrs=[-1]: [0]``."""
    for landed in sorted(overrides, key=len, reverse=True):
        below = path.removeprefix(landed)
        if below == path or (below and below[0] not in ".["):
            continue
        return f"--set {overrides[landed]}" + (f": {below.removeprefix('.')}" if below else "")
    return path


def format_path(parts: Iterable[str | int]) -> str:
    """``["arms", 1, "peak_lrs", 0]`` -> ``arms[1].peak_lrs[0]`` (``(suite)`` for the whole suite)."""
    text = ""
    for key in parts:
        text += f"[{key}]" if isinstance(key, int) else ("." if text else "") + str(key)
    return text or "(suite)"


def field_path(loc: tuple, raw: Any) -> str:
    """``("arms", 1, "baseline", "peak_lrs", 0)`` -> ``arms[1].peak_lrs[0]`` (the union tag dropped)."""
    return format_path(key for key, _ in _walk(loc, raw))


def _walk(loc: tuple, raw: Any) -> Iterable[tuple[Any, Any]]:
    """(key, raw value there) along ``loc``, skipping the tag pydantic inserts after a union's index."""
    node = raw
    after_index = False
    for key in loc:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and -len(node) <= key < len(node) else None
            after_index = True
            yield key, node
            continue
        if after_index and isinstance(node, dict) and key == node.get("kind"):
            after_index = False
            continue
        after_index = False
        node = node.get(key) if isinstance(node, dict) else None
        yield key, node


_ARM_LIST = object()  # marks "inside the arms list" while walking a location


def _allowed_fields(loc: tuple, raw: Any) -> list[str]:
    """The field names allowed where ``loc`` points (for 'unknown field' messages)."""
    model: Any = Suite
    for key, node in list(_walk(loc, raw))[:-1]:
        if isinstance(key, int):
            if model is _ARM_LIST:
                model = ARM_KINDS.get(node.get("kind") if isinstance(node, dict) else None)
            continue
        if not (isinstance(model, type) and key in model.model_fields):
            return []
        if model is Suite and key == "arms":
            model = _ARM_LIST
            continue
        annotation = model.model_fields[key].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if isinstance(model, type) else []
