"""Loading a suite: find the file, read it, apply ``--set``, validate, apply ``--only``.

    suite = load_suite("quick", sets=["epochs=3"], only=["baseline"])
    trials = expand(suite)                   # autowu_bench.platform.suite.expansion
    missing = data_problems(suite)           # autowu_bench.platform.checks.data

The schema is in ``suite.schema``, the error messages in ``suite.errors``, the ``--set``/``--only`` language
in ``suite.overrides``.
"""

from __future__ import annotations

import re
import sys
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from autowu_bench import workloads

from autowu_bench.platform.suite.errors import SuiteError, blames_overrides, validation_problems
from autowu_bench.platform.suite.overrides import apply_overrides, select
from autowu_bench.platform.suite.schema import NAME_PATTERN, Suite
from autowu_bench.platform.suite.yaml_reader import load_yaml, yaml_problem


def load_suite(
    name_or_path: str | Path,
    *,
    sets: Iterable[str] = (),
    only: Iterable[str] = (),
    tracking_uri: str | None = None,
    results: str | None = None,
    download: bool = False,
) -> Suite:
    """The suite ``name_or_path`` (a packaged name or a YAML path), ready to expand; SuiteError otherwise.

    In order: ``sets`` (``--set key=value``) override the file; ``tracking_uri`` and ``results``, when
    given, override those fields; the result is validated; ``only`` selects; ``download`` fetches data
    sets missing under ``data.root`` (of the selected workloads). Whether the data is there is not
    checked here: see ``checks.data.data_problems``.
    """
    path = find_suite(name_or_path)
    raw, overrides = apply_overrides(read_suite(path), sets)
    if tracking_uri:
        raw["tracking_uri"] = tracking_uri
    if results:
        raw["results"] = results
    suite = select(validate_suite(raw, source=str(path), overrides=overrides), only)
    if download:
        download_missing_data(suite)
    return suite


def packaged_suites() -> list[str]:
    """Names of the suites shipped in ``autowu_bench/suites``."""
    folder = importlib_resources.files("autowu_bench") / "suites"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def find_suite(name_or_path: str | Path) -> Path:
    """A suite file: ``name_or_path`` if it is a file, else the packaged suite of that name."""
    try:
        path = Path(name_or_path).expanduser()
    except RuntimeError:  # "~user/..." of no such user
        path = Path(name_or_path)
    if path.is_file():
        return path.absolute()
    packaged = Path(str(importlib_resources.files("autowu_bench") / "suites" / f"{name_or_path}.yaml"))
    if re.fullmatch(NAME_PATTERN, str(name_or_path)) and packaged.is_file():
        return packaged
    raise SuiteError(
        [f"suite {str(name_or_path)!r}: no such file and no packaged suite of that name; "
         f"give a path to a YAML file or one of {packaged_suites()}"]
    )


def read_suite(name_or_path: str | Path) -> dict[str, Any]:
    """The raw suite mapping of a packaged suite name or a YAML path: UTF-8 text, YAML with no key
    given twice (``suite.yaml_reader``), a mapping at the top; SuiteError naming the file otherwise."""
    path = find_suite(name_or_path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SuiteError([f"the file cannot be read ({exc.strerror or exc}); check that it is a readable file"],
                         source=str(path)) from None
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save the file as UTF-8"
        raise SuiteError([problem], source=str(path)) from None
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SuiteError([f"not valid YAML: {yaml_problem(exc)}"], source=str(path)) from None
    if not isinstance(raw, dict):
        raise SuiteError([f"the file holds {type(raw).__name__}, not a mapping of suite fields"], source=str(path))
    return raw


def validate_suite(raw: dict[str, Any], source: str | None = None, overrides: dict[str, str] | None = None) -> Suite:
    """The validated suite (``source``: the file it came from), or a SuiteError listing every problem;
    ``overrides`` (``apply_overrides``' locations of the ``--set`` values) names a problem a ``--set``
    caused by that ``--set``, and the error blames the file only for the problems that are its own."""
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc, raw, overrides)
        blamed = sum(map(blames_overrides, problems))
        if blamed:
            source = f"{source} and the --set values" if source and blamed < len(problems) else "the --set values"
        raise SuiteError(problems, source=source) from None
    suite._source = source
    return suite


def suite_to_yaml(suite: Suite) -> str:
    """The resolved suite (after overrides and selection) as YAML, loadable by ``load_suite``."""
    return yaml.safe_dump(suite.model_dump(mode="json"), sort_keys=False)


def download_missing_data(suite: Suite) -> None:
    """Fetch each workload's data set into ``data.root`` when it is not there (only on request: nothing
    downloads at run time). What cannot be fetched is left to ``data_problems`` to report."""
    root = suite.data.root
    for name in suite.workloads:
        workload = workloads.get_workload(name)
        if root is None or not workload.check_data(root):
            continue  # the default location is an installed package, or the data is already there
        print(f"downloading the data of {name} into {root} ...", flush=True)
        try:
            workload.load(root, val_size=0, download=True)
        except workloads.DataError as exc:
            print(f"download of {name} failed: {exc}", file=sys.stderr, flush=True)
