"""A real `ray start --head` on 127.0.0.1 with token auth, and the OCR job via `ray job submit`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ray


def _ray(*args: str, env: dict, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    ray_bin = Path(sys.executable).with_name("ray")
    return subprocess.run([str(ray_bin), *args], env=env, cwd=ROOT, capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture()
def head(tmp_path):
    env = dict(os.environ)
    env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "auth_token")
    env.pop("RAY_ADDRESS", None)
    env["RAY_AUTH_MODE"] = "token"
    generated = _ray("get-auth-token", "--generate", env=env)
    assert (tmp_path / "auth_token").exists(), generated.stderr
    _ray("start", "--head", "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
         "--num-cpus", "2", "--disable-usage-stats", "--temp-dir", str(tmp_path / "ray"), env=env)
    try:
        yield env
    finally:
        _ray("stop", "--force", env=env, check=False)


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


def test_job_submit_without_token_is_refused(head, tmp_path):
    env = dict(head)
    env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "missing_token")
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    result = _ray("job", "submit", "--address", "http://127.0.0.1:8265", "--", "python", "-c", "print(1)",
                  env=env, check=False, timeout=120)
    assert result.returncode != 0
    assert "auth" in (result.stdout + result.stderr).lower() or "401" in result.stdout + result.stderr
