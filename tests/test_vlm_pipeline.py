"""The GPU engines through the Ray pipeline, on tiny checkpoints and logical GPUs.

Ray is started with one *logical* GPU, and both engine pools ask for half of it: this
checks the fractional-GPU scheduling a real cluster does, while the models run on CPU.
One Ray session serves both runs (the job joins an existing session).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import ray

from jobs.ocr import main

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_with_logical_gpu():
    ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, num_gpus=1, include_dashboard=False)
    yield
    ray.shutdown()


def _flow(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in mapping.items()) + "}"


def _gpu_pool(kind: str) -> list[str]:
    return ["--set", f"ocr.{kind}.pool={{concurrency: [1, 1], batch_size: 2, num_cpus: 0.5, num_gpus: 0.5}}"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, samples_dir) -> Path:
    folder = tmp_path_factory.mktemp("vlm_inputs")
    shutil.copy(samples_dir / "report.pdf", folder / "report.pdf")
    return folder


def test_dots_and_gemma_engines_run_batched_through_the_pipeline(ray_with_logical_gpu, inputs, tmp_path, tiny_qwen_dir, tiny_gemma_dir):
    """A tiny token budget cuts every page off: each page is retried once, then kept as an error with its raw output."""
    dots = {"model": str(tiny_qwen_dir), "max_new_tokens": 3, "extra_max_new_tokens": 2, "max_pixels": 200704, "batch_size": 2}
    gemma = {"model": str(tiny_gemma_dir), "max_new_tokens": 4, "batch_size": 4}
    args = [
        str(inputs), "--out", str(tmp_path), "--dpi", "72",
        "--set", "ocr.layout.engine=dots", "--set", f"ocr.layout.options={_flow(dots)}", *_gpu_pool("layout"),
        "--set", "ocr.picture.engine=gemma", "--set", f"ocr.picture.options={_flow(gemma)}", *_gpu_pool("picture"),
    ]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.pdf.json").read_text())
    assert [p["page_number"] for p in report["pages"]] == [1, 2] and report["pages_failed"] == 2
    for page in report["pages"]:
        assert page["engines"]["layout"] == "dots"
        assert page["error"]["kind"] == "truncated_output" and page["error"]["attempts"] == 2
        assert page["info"]["retries"] == 1 and page["info"]["new_tokens"] == 5 and "raw_output" in page["info"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pages_retried"] == 2 and summary["failures_by_kind"] == {"truncated_output": 2}


def test_gemma_reads_the_picture_crops_found_by_layout(ray_with_logical_gpu, inputs, tmp_path, tiny_gemma_dir):
    gemma = {"model": str(tiny_gemma_dir), "max_new_tokens": 4, "extra_max_new_tokens": 0, "batch_size": 4}
    args = [str(inputs), "--out", str(tmp_path), "--set", "ocr.picture.engine=gemma",
            "--set", f"ocr.picture.options={_flow(gemma)}", *_gpu_pool("picture")]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.pdf.json").read_text())
    page2 = report["pages"][1]
    pictures = [i for i, e in enumerate(page2["ocr_pass_result"]) if e["category"] == "Picture"]
    assert pictures and page2["engines"] == {"layout": "pymupdf", "picture": "gemma"}
    assert [p["region_id"] for p in page2["picture_ocr_result"]] == pictures
    assert all(isinstance(p["text"], str) for p in page2["picture_ocr_result"])  # random weights: random words
    assert page2["timings"]["picture"] > 0
