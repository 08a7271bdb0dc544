"""A real `ray start --head` on 127.0.0.1 with token auth, and the OCR job via `ray job submit`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ray


def _ray(*args: str, env: dict, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    ray_bin = Path(sys.executable).with_name("ray")
    result = subprocess.run([str(ray_bin), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"ray {' '.join(args[:3])} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("head")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # jobs' `python` is this environment's
    env["HOME"] = str(tmp_path / "home")  # the token goes to $HOME/.ray/auth_token, not the user's
    env["RAY_AUTH_MODE"] = "token"  # clients (ray job submit) only send the token in token mode
    generated = _ray("get-auth-token", "--generate", env=env)
    assert (tmp_path / "home" / ".ray" / "auth_token").exists(), generated.stderr
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    _ray("start", "--head", "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
         "--num-cpus", "2", "--disable-usage-stats", "--temp-dir", temp_dir, env=env)
    try:
        yield env
    finally:
        _ray("stop", "--force", env=env, check=False)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ocr_job_via_ray_job_submit(head, tmp_path, samples_dir):
    out = tmp_path / "out"
    result = _ray(
        "job", "submit", "--address", "http://127.0.0.1:8265", "--working-dir", ".", "--",
        "python", "-m", "jobs.ocr", str(samples_dir / "report.pdf"), "--out", str(out),
        "--set", "ocr.layout.pool.concurrency=[1,1]",
        env=head, timeout=600,
    )
    assert "succeeded" in (result.stdout + result.stderr).lower()
    report = json.loads((out / "report.pdf.json").read_text())
    assert report["pages_failed"] == 0 and len(report["pages"]) == 2
    assert "Quarterly Field Report" in json.dumps(report)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ray"].startswith("Ray cluster at")  # it joined the cluster, did not start its own


@pytest.mark.parametrize("token", [None, "not-the-cluster-token"])
def test_job_submit_without_the_token_is_refused(head, tmp_path, token):
    env = dict(head)
    env["HOME"] = str(tmp_path / "stranger")  # no ~/.ray/auth_token here
    if token:
        env["RAY_AUTH_TOKEN"] = token
    result = _ray("job", "submit", "--address", "http://127.0.0.1:8265", "--", "python", "-c", "print(1)",
                  env=env, check=False, timeout=120)
    output = (result.stdout + result.stderr).lower()
    assert result.returncode != 0
    assert "unauthorized" in output or "authentication" in output
    assert "succeeded" not in output


def test_rayjob_manifest_entrypoint_runs_via_ray_job_submit(head, tmp_path, samples_dir):
    """The KubeRay RayJob's entrypoint, with /shared pointing at a local folder, runs against a real cluster."""
    import shlex

    import yaml

    manifest = yaml.safe_load((ROOT / "cluster" / "kuberay" / "rayjob-ocr.yaml").read_text())
    entrypoint = manifest["spec"]["entrypoint"].replace("/shared", str(tmp_path))
    (tmp_path / "pdfs").mkdir()
    shutil.copy(samples_dir / "report.pdf", tmp_path / "pdfs" / "report.pdf")
    result = _ray("job", "submit", "--address", "http://127.0.0.1:8265", "--working-dir", ".", "--",
                  *shlex.split(entrypoint), "--set", "ocr.layout.pool.concurrency=[1,1]", env=head, timeout=600)
    assert "succeeded" in (result.stdout + result.stderr).lower()
    report = json.loads((tmp_path / "ocr-out" / "report.pdf.json").read_text())
    assert report["pages_failed"] == 0 and "Quarterly Field Report" in json.dumps(report)


# --------------------------------------------------------------------------- jobs that submit themselves

JOB_SERVER = "http://127.0.0.1:8265"


def _submission_ids(env: dict) -> dict[str, str]:
    """Every job the head's job server knows: submission id -> status."""
    script = (
        "import json; from ray.job_submission import JobSubmissionClient as C; "
        f"print(json.dumps({{j.submission_id: str(j.status) for j in C({JOB_SERVER!r}).list_jobs() if j.submission_id}}))"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _run_self_submitting(env: dict, module: str, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """Run ``python -m module args`` here (it submits itself) and return its process and the jobs it added."""
    before = _submission_ids(env)
    result = subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    after = _submission_ids(env)
    return result, {job: status for job, status in after.items() if job not in before}


def _tiny_sweep_config(folder: Path, model: Path, data: Path) -> Path:
    import yaml

    config = {
        "train": {"scaling": {"num_workers": 1, "cpus_per_worker": 0.5}, "data": {"eval_samples": 2, "max_new_tokens": 4}},
        "tune": {
            "name": "submitted", "storage_path": str(folder / "ray_results"), "model": str(model), "data": str(data),
            "space": {"ratio": [1, 2], "parts": ["language"], "pooling": ["none"], "max_pixels": [None], "distill_steps": [0]},
            "max_concurrent_trials": 1, "resources": {"cpu": 1},
            "eval": {"limit": 2, "batch_size": 2, "flops_pages": 1},
        },
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def tiny_lines(tmp_path_factory) -> Path:
    from training.data.synthetic import SyntheticConfig, write_splits

    folder = tmp_path_factory.mktemp("submitted_lines")
    write_splits(SyntheticConfig(augment=False, max_chars=8, width=112), folder, {"train": 16, "val": 4, "test": 4})
    return folder


@pytest.mark.parametrize("family", ["ocr", "training", "sweep", "one-process"])
def test_address_flag_submits_exactly_one_job_that_succeeds(head, tmp_path, samples_dir, tiny_lines, tiny_qwen_dir, family):
    """``--address http://...`` on each family of entrypoints (``RAY_ADDRESS=http://...`` for the OCR job): one job on
    the server, succeeded, outputs written.

    The submitted command carries ``--address http://...`` too; run as a Ray job it must join its
    cluster instead of submitting itself again (it once did, 72 times in 5 minutes).
    """
    out = tmp_path / "out"
    if family == "ocr":
        module, args = "jobs.ocr", [str(samples_dir / "report.pdf"), "--out", str(out), "--set", "ocr.layout.pool.concurrency=[1,1]"]
        output = out / "report.pdf.json"
    elif family == "training":
        module = "jobs.train_reference"
        args = ["--out", str(out), "--data", str(tiny_lines), "--steps", "2", "--workers", "1",
                "--set", "train.reference.hidden_size=32", "--set", "train.reference.num_layers=1",
                "--set", "train.reference.vision_depth=1", "--set", "train.reference.vision_hidden_size=32",
                "--set", "train.checkpoint.every_steps=2", "--set", f"train.checkpoint.storage_path={tmp_path / 'runs'}",
                "--set", "train.data.eval_samples=2", "--set", "train.data.max_new_tokens=4",
                "--set", "train.scaling.cpus_per_worker=0.5"]
        output = out / "metrics.json"
    elif family == "sweep":
        module, args = "jobs.sweep", ["--config", str(_tiny_sweep_config(tmp_path, tiny_qwen_dir, tiny_lines))]
        output = tmp_path / "ray_results" / "submitted" / "trials.csv"
    else:  # jobs.evaluate, jobs.compress, jobs.flops: no Ray of their own, submitted all the same
        module = "jobs.evaluate"
        args = ["--model", str(tiny_qwen_dir), "--data", str(tiny_lines), "--split", "test", "--limit", "2",
                "--max-new-tokens", "2", "--out", str(out / "eval.json")]
        output = out / "eval.json"
    if family == "ocr":  # as `ray job submit` users export it: RAY_ADDRESS=http://...; the job's own RAY_ADDRESS is the GCS
        result, added = _run_self_submitting({**head, "RAY_ADDRESS": JOB_SERVER}, module, *args)
    else:
        result, added = _run_self_submitting(head, module, *args, "--address", JOB_SERVER)
    log = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, log
    assert len(added) == 1, (added, log)
    assert list(added.values()) == ["SUCCEEDED"], (added, log)
    assert output.is_file(), log
