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
