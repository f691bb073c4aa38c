"""The command line's suite language: ``--set key=value`` on the raw mapping, ``--only names`` on the suite.

``--set`` applies before validation, so an overridden value is checked like one in the file;
``--only`` applies after, to names the validated suite holds.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any, Iterable

import yaml

from autowu_bench.platform.suite.errors import SuiteError, format_path
from autowu_bench.platform.suite.yaml_reader import load_yaml, yaml_problem

if TYPE_CHECKING:
    from autowu_bench.platform.suite.schema import Suite


def apply_overrides(raw: dict[str, Any], assignments: Iterable[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A copy of ``raw`` with each ``key=value`` applied (values are YAML: ``--set epochs=3``), and where
    each one landed: the field path in the suite's terms (``arms[1].peak_lr``, as ``errors.field_path``
    writes it) -> the ``key=value`` as typed, so that validation blames a bad value on its ``--set``.

    Keys are dotted paths; a list element is picked by index or, for arms, by name
    (``arms.baseline.peak_lrs=[0.001,0.01]``). Missing mappings on the way are created.
    """
    result = copy.deepcopy(raw)
    origins: dict[str, str] = {}
    problems = []
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {assignment}: expected key=value, e.g. --set epochs=3")
            continue
        try:
            value = load_yaml(text)
        except yaml.YAMLError as exc:
            problems.append(f"--set {assignment}: the value is not valid YAML ({yaml_problem(exc)}); quote it")
            continue
        located = _assign(result, key.strip().split("."), value)
        if isinstance(located, str):
            problems.append(f"--set {assignment}: {located}")
        else:
            landed = format_path(located)
            # An earlier --set below this one was overwritten by it: its value is gone, so is its blame.
            origins = {p: a for p, a in origins.items()
                       if not (p == landed or p.startswith((landed + ".", landed + "[")))}
            origins[landed] = assignment
    if problems:
        raise SuiteError(problems)
    return result, origins


def _assign(node: Any, path: list[str], value: Any) -> list[str | int] | str:
    """Sets ``value`` at ``path``; the location it set (list indices resolved), or what is wrong."""
    located: list[str | int] = []
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(node, list):
            index = _list_index(node, key)
            if index is None:
                names = [item.get("name") for item in node if isinstance(item, dict) and "name" in item]
                return f"{where}: no element {key!r}; use an index below {len(node)}" + (
                    f" or one of the names {names}" if names else ""
                )
            located.append(index % len(node))
            if last:
                node[index] = value
                return located
            node = node[index]
        elif isinstance(node, dict):
            located.append(key)
            if last:
                node[key] = value
                return located
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        else:
            return f"{'.'.join(path[:depth])} holds {node!r}, which has no field {key!r}"
    return located


def _list_index(items: list, key: str) -> int | None:
    if re.fullmatch(r"-?\d+", key):
        index = int(key)
        return index if -len(items) <= index < len(items) else None
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == key:
            return i
    return None


def select(suite: Suite, only: Iterable[str]) -> Suite:
    """Keep the arms, batch sizes and workloads named in ``only`` (comma lists allowed).

    Each kind is filtered only when at least one of its values is named: ``--only baseline,4096``
    keeps the baseline arm at batch 4096 for every workload.
    """
    tokens = [t.strip() for item in only for t in str(item).split(",") if t.strip()]
    if not tokens:
        return suite
    arm_names = [a.name for a in suite.arms]
    arms, sizes, workloads, unknown = set(), set(), set(), []
    for token in tokens:
        if token in arm_names:
            arms.add(token)
        elif token in suite.workloads:
            workloads.add(token)
        elif re.fullmatch(r"[0-9]+", token) and int(token) in suite.batch_sizes:
            sizes.add(int(token))
        else:
            unknown.append(token)
    if unknown:
        raise SuiteError(
            [f"--only {unknown}: not an arm, batch size or workload of suite {suite.name!r}; "
             f"arms: {arm_names}, batch sizes: {suite.batch_sizes}, workloads: {suite.workloads}"]
        )
    update: dict[str, Any] = {}
    if arms:
        update["arms"] = [a for a in suite.arms if a.name in arms]
    if sizes:
        update["batch_sizes"] = [b for b in suite.batch_sizes if b in sizes]
    if workloads:
        update["workloads"] = [w for w in suite.workloads if w in workloads]
    return suite.model_copy(update=update)
