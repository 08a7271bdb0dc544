"""Gated checkpoints: the loader sends the process's hub token, and a refusal says how to get access.

A local stand-in for the hub answers every request the way the real one answers for a
gated repository (HTTP 401/403 with ``X-Error-Code: GatedRepo``), so the whole path runs
for real: transformers, huggingface_hub's error mapping, and the project's loader.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = "example-org/gated-picture-model"

LOAD = """
import json, sys
from vlm.loading import ModelLoadError, ModelSource, load_model_and_processor
try:
    load_model_and_processor(ModelSource(model=sys.argv[1], device_map=None), role="picture")
except ModelLoadError as error:
    print(json.dumps({"error": str(error)}))
"""


class GatedHub(http.server.BaseHTTPRequestHandler):
    """Refuses everything as the hub refuses a gated repo; records the Authorization header of each request."""

    seen: list[str | None] = []

    def _refuse(self) -> None:
        GatedHub.seen.append(self.headers.get("Authorization"))
        status = 403 if self.headers.get("Authorization") else 401
        body = json.dumps({"error": f"Access to model {MODEL} is restricted."}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", f"Access to model {MODEL} is restricted and you are not in the authorized list.")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def gated_hub():
    GatedHub.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GatedHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _load(endpoint: str, tmp_path: Path, token: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    if token:
        env["HF_TOKEN"] = token
    result = subprocess.run(
        [sys.executable, "-c", LOAD, MODEL], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["error"]


def test_the_token_from_hf_token_is_sent_and_a_refusal_says_how_to_get_access(gated_hub, tmp_path):
    error = _load(gated_hub, tmp_path, token="hf_example_token")
    assert "Bearer hf_example_token" in GatedHub.seen
    assert f"{MODEL} is a gated model" in error
    assert "the token sent was refused" in error
    assert f"https://huggingface.co/{MODEL}" in error
    assert "HF_TOKEN" in error and "runtime_env" in error and "huggingface-cli login" in error


def test_without_a_token_the_error_says_none_was_found(gated_hub, tmp_path):
    error = _load(gated_hub, tmp_path, token=None)
    assert GatedHub.seen and all(header is None for header in GatedHub.seen)
    assert f"{MODEL} is a gated model" in error
    assert "no hub token was found" in error
