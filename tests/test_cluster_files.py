"""Launch files in cluster/: they parse, the `ray up` file passes Ray's own validation, entrypoints match the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"


def _documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(CLUSTER.rglob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


def test_every_yaml_parses_and_is_a_mapping() -> None:
    documents = _documents()
    assert {p.name for p, _ in documents} >= {
        "ray-up-aws.yaml", "raycluster.yaml", "rayjob-ocr.yaml", "rayjob-distill.yaml",
        "rayjob-train-reference.yaml", "rayjob-lora.yaml", "rayjob-sweep.yaml",
    }
    assert all(isinstance(doc, dict) for _, doc in documents)


def test_ray_up_file_passes_rays_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "ray-up-aws.yaml").read_text())
    validate_config(prepare_config(config))
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] < gpu["max_workers"]  # autoscaling
    assert any("pip install" in command and "[models" in command for command in config["setup_commands"])
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    broken = yaml.safe_load((CLUSTER / "ray-up-aws.yaml").read_text())
    broken["available_node_types"]["head"]["no_such_field"] = 1
    with pytest.raises(Exception, match="no_such_field"):
        validate_config(prepare_config(broken))


def _kind(kind: str) -> list[dict]:
    return [doc for _, doc in _documents() if doc.get("kind") == kind]


def test_kuberay_manifests_have_a_gpu_worker_group_and_token_auth() -> None:
    (cluster,) = _kind("RayCluster")
    jobs = _kind("RayJob")
    for spec in [cluster["spec"]] + [job["spec"]["rayClusterSpec"] for job in jobs]:
        assert spec["authOptions"]["mode"] == "token"
        (group,) = spec["workerGroupSpecs"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "1" and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for job in jobs:
        assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_rayjob_entrypoints_are_the_readme_commands() -> None:
    readme = (ROOT / "cluster" / "README.md").read_text()
    for job in _kind("RayJob"):
        entrypoint = job["spec"]["entrypoint"]
        # The README shows it after `ray job submit ... --`, possibly wrapped with a backslash.
        assert entrypoint in re.sub(r"\\\n\s*", "", readme), entrypoint


def _entrypoint_config(entrypoint: str):
    """Parse a RayJob entrypoint with its job's own command line and load the config it asks for."""
    import importlib
    import shlex

    python, dash_m, module, *argv = shlex.split(entrypoint)
    assert (python, dash_m) == ("python", "-m") and module.startswith("jobs."), entrypoint
    job = importlib.import_module(module)
    args = job.build_parser().parse_args(argv)
    from launch.launcher import load_job_config  # every job builds its config this way, with its own shortcut flags

    return module, load_job_config(args, job.SHORTCUTS)


def test_rayjob_entrypoints_parse_with_their_jobs_and_fit_their_clusters(monkeypatch) -> None:
    """Every option of every RayJob entrypoint is accepted by the job itself (argparse and config
    validation, the default ray_config.yaml included), and the GPUs it asks for are in its cluster.

    Why: these jobs are not run here (they need GPUs and hours); a typo in a --set key or a
    worker count above the GPU group would otherwise show up only on the cluster.
    """
    monkeypatch.chdir(ROOT)  # the jobs read ./ray_config.yaml, as in the image's working_dir
    modules = set()
    for job in _kind("RayJob"):
        module, config = _entrypoint_config(job["spec"]["entrypoint"])
        modules.add(module)
        (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
        gpus_per_pod = int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        if module in ("jobs.train_reference", "jobs.distill", "jobs.finetune_lora"):
            scaling = config.train.scaling
            assert scaling.use_gpu, module
            # One GPU per Ray Train worker, all of them at once: the pods present from the start must hold them.
            assert scaling.num_workers <= group["minReplicas"] * gpus_per_pod, (module, scaling.num_workers)
            assert config.train.checkpoint.storage_path.startswith("/shared/"), module  # survives the pods
        if module == "jobs.sweep":
            assert 0 < config.tune.resources.gpu <= gpus_per_pod
            assert config.tune.storage_path.startswith("/shared/")
    assert modules == {"jobs.ocr", "jobs.distill", "jobs.train_reference", "jobs.finetune_lora", "jobs.sweep"}
    with pytest.raises(SystemExit):  # the check has teeth: an option the job does not know is refused
        _entrypoint_config("python -m jobs.train_reference --out /shared/x --no-such-option")


def test_every_launch_file_is_documented_with_its_command() -> None:
    readmes = (ROOT / "README.md").read_text() + (CLUSTER / "README.md").read_text()
    for path in sorted((CLUSTER / "kuberay").glob("*.yaml")):
        assert f"kubectl apply -f cluster/kuberay/{path.name}" in readmes, path.name


def test_dockerfile_builds_the_image_the_manifests_name() -> None:
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+", dockerfile, re.M)
    assert '.[models,train,tune]' in dockerfile and "COPY . ." in dockerfile
    images = {c["image"] for _, doc in _documents() for c in _containers(doc)}
    assert len(images) == 1 and f"-t {images.pop()}" in dockerfile


def _containers(document: dict) -> list[dict]:
    found = []
    if isinstance(document, dict):
        if "containers" in document:
            found += document["containers"]
        for value in document.values():
            found += _containers(value)
    elif isinstance(document, list):
        for value in document:
            found += _containers(value)
    return found
