"""cluster.yaml against Ray's own cluster-config schema, and the project's needs from it."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_valid_for_the_ray_cluster_launcher(cluster):
    # what `ray up` does before talking to the cloud: merge the provider defaults, then check the schema
    validate_config(prepare_config(copy.deepcopy(cluster)))


def test_the_schema_check_is_real(cluster):
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_worker"]["resurces"] = {"GPU": 1}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_aws_head_plus_gpu_workers(cluster):
    assert cluster["provider"]["type"] == "aws"
    nodes = cluster["available_node_types"]
    assert nodes[cluster["head_node_type"]]["resources"]["GPU"] == 0
    gpu_types = [n for n in nodes.values() if n.get("resources", {}).get("GPU", 0) > 0]
    assert gpu_types and all(n["max_workers"] > 0 for n in gpu_types)


def test_repo_synced_and_package_installed_with_pins(cluster):
    assert cluster["file_mounts"]["~/autowu-bench"] == "."
    setup = "\n".join(cluster["setup_commands"])
    assert "-c ~/autowu-bench/constraints.txt -e ~/autowu-bench" in setup
    assert "mount -t nfs4" in setup and "/mnt/shared" in setup


def test_mlflow_server_on_the_heads_private_ip(cluster):
    setup = "\n".join(cluster["head_setup_commands"])
    assert "mlflow server" in setup and "--host $(hostname -I" in setup and "0.0.0.0" not in setup
    assert "--dashboard-host=127.0.0.1" in "\n".join(cluster["head_start_ray_commands"])
    for name in ("AUTOWU_RAY_ADDRESS=auto", "MLFLOW_TRACKING_URI=http://", "AUTOWU_RESULTS=/mnt/shared/"):
        assert name in setup


def _mlflow_unit(cluster, tmp_path) -> str:
    """The systemd unit the head's setup writes, made by running its command with sudo, hostname and
    systemctl standing in (and the unit written under tmp_path, not /etc)."""
    import subprocess

    (command,) = [c for c in cluster["head_setup_commands"] if "autowu-mlflow.service" in c]
    unit = tmp_path / "autowu-mlflow.service"
    command = command.replace("/etc/systemd/system/autowu-mlflow.service", str(unit))
    command = command.replace("mkdir -p /mnt/shared/autowu-bench/mlflow", f"mkdir -p {tmp_path}/shared")
    stubs = ("sudo() { \"$@\"; }; systemctl() { echo systemctl \"$@\" >> " + str(tmp_path / "calls") + "; }; "
             "hostname() { echo '10.0.3.7 172.17.0.1'; }; ")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/home/ubuntu", "USER": "ubuntu"}
    subprocess.run(["bash", "-c", stubs + command], check=True, env=env)
    assert (tmp_path / "calls").read_text().split("\n")[:3] == [
        "systemctl daemon-reload", "systemctl enable autowu-mlflow", "systemctl restart autowu-mlflow"]
    return unit.read_text()


def test_the_cluster_mlflow_server_is_a_systemd_service_with_its_store_on_shared_storage(cluster, tmp_path):
    """Supervised (restarted when it dies, started at boot, restarted by name: no pid file), on the head's
    private IP, its sqlite file and artifacts on the shared file system that outlives `ray down`."""
    import configparser
    import shlex

    from click.testing import CliRunner
    from mlflow.cli import server

    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(_mlflow_unit(cluster, tmp_path))
    service = parser["Service"]
    assert service["Restart"] == "always" and service["User"] == "ubuntu"
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    assert "/mnt/shared" in parser["Unit"]["RequiresMountsFor"]
    words = shlex.split(service["ExecStart"])
    assert words[:2] == ["/home/ubuntu/autowu-venv/bin/mlflow", "server"]
    options = dict(zip(words[2::2], words[3::2]))
    assert options["--host"] == "10.0.3.7" and options["--workers"] == "1"  # one writer of the sqlite file
    assert options["--backend-store-uri"].startswith("sqlite:////mnt/shared/")
    assert options["--artifacts-destination"].startswith("/mnt/shared/")
    # The options are the pinned MLflow's own: its CLI parses them (--help stops it before serving).
    result = CliRunner().invoke(server, words[2:] + ["--help"])
    assert result.exit_code == 0, result.output


def test_the_nodes_python_is_one_every_pin_installs_on(cluster):
    setup = "\n".join(cluster["setup_commands"])
    python = re.search(r"\|\| (python3\.\d+) -m venv ~/autowu-venv", setup)
    assert python, "the venv must be made with a named Python, not Ubuntu 22.04's python3 (3.10)"
    version = python.group(1).removeprefix("python")
    assert f"apt-get install -y -q {python.group(1)} {python.group(1)}-venv" in setup
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert version in SpecifierSet(requires) and "3.10" not in SpecifierSet(requires)
    pins = [line.split("==")[0] for line in (REPO / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")]
    refusing = {}
    for name in pins:
        try:
            wanted = importlib.metadata.metadata(name).get("Requires-Python")
        except importlib.metadata.PackageNotFoundError:
            continue  # pinned for another platform or an extra this venv did not install
        if wanted:
            assert version in SpecifierSet(wanted), f"{name} needs Python {wanted}, the nodes get {version}"
            if "3.10" not in SpecifierSet(wanted):
                refusing[name] = wanted
    assert {"numpy", "pandas"} <= set(refusing)  # why 3.10 (Ubuntu 22.04's own) cannot run the pins


@pytest.mark.parametrize("installed", ["3.11 final", "3.11.0rc1 (Ubuntu 22.04's own)", "none"])
def test_the_nodes_get_deadsnakes_python_unless_a_final_3_11_is_there(cluster, tmp_path, installed):
    """Ubuntu 22.04's jammy-updates python3.11 is the release candidate 3.11.0rc1, which the pinned torch cannot
    import on: the setup's guard keeps a final 3.11 and installs deadsnakes' over anything else. The guard's
    own Python check runs here, on this interpreter dressed as the node's python3.11."""
    (command,) = [c for c in cluster["setup_commands"] if "ppa:deadsnakes" in c]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if installed != "none":
        (bin_dir / "python3.11").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
        (bin_dir / "python3.11").chmod(0o755)
    site = tmp_path / "site"
    site.mkdir()
    if installed.startswith("3.11.0rc1"):
        (site / "sitecustomize.py").write_text(
            "import collections, sys\n"
            "sys.version_info = collections.namedtuple('v', 'major minor micro releaselevel serial')"
            "(3, 11, 0, 'candidate', 1)\n")
    calls = tmp_path / "sudo-calls"
    stubs = f'sudo() {{ echo "$*" >> {calls}; }}; '
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYTHONPATH": str(site)}  # no python3.11 but this one
    subprocess.run(["/bin/bash", "-c", stubs + command], check=True, env=env)
    ran = calls.read_text().splitlines() if calls.exists() else []
    if installed == "3.11 final":
        assert ran == []
    else:
        assert ran[0] == "add-apt-repository -y ppa:deadsnakes/ppa"
        assert ran[-1] == "apt-get install -y -q python3.11 python3.11-venv python3.11-dev"


@pytest.mark.slow  # pip resolves about 150 packages from the index (about 20 s)
def test_the_nodes_install_command_resolves_every_pin_on_python_3_11(cluster, tmp_path):
    """cluster.yaml's own pip command, as each node runs it, resolved by pip on Python 3.11 (the nodes'
    deadsnakes python3.11) with --dry-run: every pinned package installs at its pin, with the "ray[default]"
    the command adds. Not the image itself (no Ubuntu 22.04 here): the Python version and the pins."""
    assert sys.version_info[:2] == (3, 11), f"this check needs the nodes' Python 3.11, not {sys.version.split()[0]}"
    (command,) = [c for c in cluster["setup_commands"] if "pip install -q -c" in c]
    words = shlex.split(command.replace("~/autowu-bench", str(REPO)))
    assert words[:2] == ["~/autowu-venv/bin/pip", "install"]
    report = tmp_path / "install.json"
    proc = subprocess.run([sys.executable, "-m", "pip", *words[1:], "--dry-run", "--ignore-installed",
                           "--report", str(report)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    lines = [line.split("#")[0].strip() for line in (REPO / "constraints.txt").read_text().splitlines()]
    pins = {canonicalize_name(name): version.split(";")[0].strip()
            for name, version in (line.split("==", 1) for line in lines if "==" in line)}
    assert {"torch", "ray", "mlflow", "numpy", "autowu-bench"} <= set(chosen)
    for name, version in chosen.items():
        if name in pins:
            assert version == pins[name], f"{name}: the nodes would get {version}, constraints.txt pins {pins[name]}"
    unpinned = sorted(set(chosen) - set(pins) - {"autowu-bench"})
    assert unpinned == [], f"the nodes' install pulls packages constraints.txt does not pin: {unpinned}"


def test_concurrency_on_the_autoscaling_cluster_counts_the_nodes_it_can_add(tmp_path):
    from autowu_bench.platform.execution.ray_cluster import autoscaler_max_resources, concurrency_for
    from autowu_bench.platform.records.spec import TrialSpec

    grown = autoscaler_max_resources(str(CLUSTER_YAML))
    assert grown == {"CPU": 8 + 8 * 8, "GPU": 8}  # the head plus 8 one-GPU workers at most
    gpu_trial = TrialSpec(trial_id="t", suite="s", arm="a", kind="baseline", workload="fmnist-mlp", batch_size=64,
                          epochs=1, seed=0, optimizer="adamp", weight_decay=0.0, use_gpu=True, gpus_per_worker=1.0)
    up_now = {"CPU": 16.0, "GPU": 1.0}  # the head and the one GPU node cluster.yaml keeps up
    assert concurrency_for([gpu_trial], up_now) == 1
    assert concurrency_for([gpu_trial], grown) == 8
    assert autoscaler_max_resources(str(tmp_path / "absent.yaml")) is None
