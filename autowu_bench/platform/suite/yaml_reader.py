"""YAML as suite files and ``--set`` values are read: safe types only, and a key given twice in one
mapping is an error (PyYAML's ``safe_load`` silently keeps the last one, so a second ``epochs:`` lower in
the file would quietly win).

    raw = load_yaml(text)        # yaml.YAMLError on bad YAML, a repeated key included
    problem = yaml_problem(exc)  # that error as one line: "line 4, column 1: ..."
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping holding the same key twice (merge keys ``<<`` may
    still be overridden: that is what they are for)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeLoader's own error says so below
                continue
            if first is not key_node:
                raise ConstructorError(
                    None, None,
                    f"key {key!r} given twice (first on line {first.start_mark.line + 1}); keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """The YAML document ``text`` as plain Python values; ``yaml.YAMLError`` when it is not valid YAML,
    holds a type outside YAML's safe set, repeats a key, or nests too deeply to read."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe types only
    except RecursionError:
        raise yaml.YAMLError("the document nests too deeply to read") from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """``error`` as one line: where (line and column), what, and in what context."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        context = f" ({error.context})" if error.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}{context}"
    return " ".join(str(error).split())
