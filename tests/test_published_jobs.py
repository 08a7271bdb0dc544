"""The published checkpoints through every job: OCR (dots.ocr, Gemma 3n), PELA distillation, LoRA, evaluation, sweep.

The dots.ocr fixture is the published folder (its own remote code) at tiny size, so each
job runs the checkpoint's own modelling code exactly as a user's download would, with
``--trust-remote-code``. Random weights: the checks are about what the jobs do with the
checkpoint (load, train, compress, serve, score, count), not about accuracy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.base import PageImage, PageMeta

pytestmark = pytest.mark.ray

PAGE = PageImage(np.full((300, 220, 3), 255, np.uint8), PageMeta("d", "d.pdf", 1, 220, 300))


def _flow(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in mapping.items()) + "}"


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.data.synthetic import SyntheticConfig, write_splits

    folder = tmp_path_factory.mktemp("published_lines")
    write_splits(SyntheticConfig(augment=False, max_chars=8, width=112), folder, {"train": 16, "val": 4, "test": 4})
    return folder


@pytest.fixture(scope="module")
def sample_pdf(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("published_inputs")
    shutil.copy(samples_dir / "report.pdf", folder / "report.pdf")
    return folder / "report.pdf"


def _training_args(tmp_path: Path) -> list[str]:
    """One CPU worker, two steps, tiny evaluations: the shape of a training job run, in seconds."""
    return [
        "--steps", "2", "--workers", "1", "--eval-limit", "2", "--trust-remote-code",
        "--set", "train.checkpoint.every_steps=2", "--set", f"train.checkpoint.storage_path={tmp_path / 'runs'}",
        "--set", "train.optim.micro_batch_size=4", "--set", "train.optim.warmup_steps=0",
        "--set", "train.scaling.cpus_per_worker=1", "--set", "train.data.eval_samples=2", "--set", "train.data.max_new_tokens=4",
    ]


def _engine(model: Path, **extra):
    from engines.registry import build_engine

    options = {"model": str(model), "trust_remote_code": True, "max_new_tokens": 4, "extra_max_new_tokens": 0,
               "max_pixels": 200_000, "dtype": "float32", **extra}
    return build_engine("dots", "layout", options)


@pytest.mark.parametrize(("decode", "dtype"), [("dynamic", "float32"), ("static", "bfloat16")])
def test_ocr_job_runs_the_published_dots(ray_cpu, sample_pdf: Path, tmp_path: Path, tiny_dots_dir: Path, decode: str, dtype: str) -> None:
    from jobs.ocr import main

    dots = {"model": str(tiny_dots_dir), "decode": decode, "dtype": dtype, "max_new_tokens": 3, "extra_max_new_tokens": 0,
            "max_pixels": 200_704, "batch_size": 2}
    args = [str(sample_pdf), "--out", str(tmp_path), "--dpi", "72", "--trust-remote-code",
            "--set", f"ocr.layout={{engine: dots, options: {_flow(dots)}, pool: {{concurrency: [1, 1], batch_size: 2, num_cpus: 1}}}}",
            "--set", "ocr.picture.enabled=false"]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.pdf.json").read_text())
    assert [p["page_number"] for p in report["pages"]] == [1, 2]
    for page in report["pages"]:
        # the published code ran on every page: random weights give text that is no layout JSON, never an exception
        assert page["engines"]["layout"] == "dots" and page["info"]["new_tokens"] == 3 and page["info"]["raw_output"]
        assert page["error"]["kind"] in ("truncated_output", "invalid_output")


def test_ocr_job_reads_picture_crops_with_gemma3n(ray_cpu, sample_pdf: Path, tmp_path: Path, tiny_gemma3n_dir: Path) -> None:
    from jobs.ocr import main

    gemma = {"model": str(tiny_gemma3n_dir), "max_new_tokens": 3, "extra_max_new_tokens": 0, "batch_size": 2}
    args = [str(sample_pdf), "--out", str(tmp_path),
            "--set", f"ocr.picture={{engine: gemma, options: {_flow(gemma)}, pool: {{concurrency: [1, 1], batch_size: 2, num_cpus: 0.5}}}}"]
    assert main(args) == 0
    page2 = json.loads((tmp_path / "report.pdf.json").read_text())["pages"][1]
    pictures = [i for i, e in enumerate(page2["ocr_pass_result"]) if e["category"] == "Picture"]
    assert pictures and page2["engines"] == {"layout": "pymupdf", "picture": "gemma"} and page2["error"] is None
    assert [p["region_id"] for p in page2["picture_ocr_result"]] == pictures
    assert all(p["text"] for p in page2["picture_ocr_result"])  # random weights: random words, from the Gemma 3n model


def test_distilled_dots_is_smaller_cheaper_and_served(ray_cpu, lines: Path, tmp_path: Path, tiny_dots_dir: Path) -> None:
    from compression.flops import count_flops
    from compression.persistence import is_compressed_checkpoint
    from engines.generative.generation import Request, encode_requests
    from jobs.distill import main
    from vlm.loading import ModelSource, load_model_and_processor
    from vlm.tiny import text_like_pages

    out = tmp_path / "distilled"
    assert main(["--teacher", str(tiny_dots_dir), "--data", str(lines), "--out", str(out), "--ratio", "2", *_training_args(tmp_path)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["compression"]["model_params_after"] < metrics["compression"]["model_params_before"]
    assert set(metrics["char_accuracy"]) == {"before_compression", "after_compression", "after_distillation"}
    model_dir = out / "model"
    assert is_compressed_checkpoint(model_dir) and (model_dir / "modeling_dots_vision.py").is_file()  # remote code travels along

    requests = [Request(image=page, prompt="Read the page.") for page in text_like_pages([(140, 112)])]
    flops = {}
    for name, folder in (("teacher", tiny_dots_dir), ("student", model_dir)):
        model, processor = load_model_and_processor(ModelSource(model=str(folder), trust_remote_code=True, dtype="float32"))
        flops[name] = count_flops(model, encode_requests(processor, requests), decode_tokens=1)
    assert flops["student"].prefill.measured < flops["teacher"].prefill.measured
    assert flops["student"].vision.measured < flops["teacher"].vision.measured  # both towers were compressed

    engine = _engine(model_dir)
    (layout,) = engine.layout([PAGE])
    assert layout.info["raw_output"] and layout.info["new_tokens"] == 4
    engine.close()


def test_lora_on_both_towers_of_dots_is_served_by_the_engine(ray_cpu, lines: Path, tmp_path: Path, tiny_dots_dir: Path) -> None:
    import zipfile

    from jobs.finetune_lora import main

    out = tmp_path / "lora"
    args = ["--base", str(tiny_dots_dir), "--data", str(lines), "--out", str(out), "--preset", "minimal", "--targets", "both",
            "--zip", *_training_args(tmp_path), "--set", "train.optim.learning_rate=0.05"]
    assert main(args) == 0
    adapter = out / "model" / "adapter"
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as tensors:
        adapted = {key for key in tensors.keys() if "lora_A" in key}
    assert any(".vision_tower.blocks." in key for key in adapted) and any(".model.layers." in key for key in adapted)
    readme = zipfile.ZipFile(out / "lora_export.zip").read("README.md").decode()
    assert "load_model_and_processor" in readme and "trust_remote_code" in readme

    base, tuned = _engine(tiny_dots_dir), _engine(tiny_dots_dir, adapter=str(adapter))
    (base_layout,), (tuned_layout,) = base.layout([PAGE]), tuned.layout([PAGE])
    assert tuned_layout.info["raw_output"] != base_layout.info["raw_output"]  # the adapter changed what the page reads as
    base.close()
    tuned.close()


def test_evaluate_scores_the_published_dots(lines: Path, tmp_path: Path, tiny_dots_dir: Path) -> None:
    from jobs.evaluate import main

    results = main(["--model", str(tiny_dots_dir), "--trust-remote-code", "--data", str(lines), "--split", "test", "--limit", "3",
                    "--max-new-tokens", "4", "--out", str(tmp_path / "eval.json")])
    assert results["data"]["records"] == 3 and 0.0 <= results["metrics"]["char_accuracy"] <= 1.0
    assert json.loads((tmp_path / "eval.json").read_text())["metrics"]["cer"] == results["metrics"]["cer"]


def test_sweep_over_ratio_and_pooling_on_the_published_dots(ray_cpu, lines: Path, tmp_path: Path, tiny_dots_dir: Path) -> None:
    import yaml

    from jobs.sweep import main
    from tune.pareto import read_table

    config = {
        "train": {"data": {"eval_samples": 2, "max_new_tokens": 4}},
        "tune": {
            "name": "dots", "storage_path": str(tmp_path), "model": str(tiny_dots_dir), "data": str(lines), "dtype": "float32",
            "space": {"ratio": [1, 2], "parts": ["both"], "pooling": ["none", "avg:2"], "max_pixels": [None], "distill_steps": [0]},
            "max_concurrent_trials": 1, "resources": {"cpu": 1}, "eval": {"limit": 2, "batch_size": 2, "flops_pages": 1},
        },
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    assert main(["--config", str(tmp_path / "sweep.yaml"), "--trust-remote-code"]) == 0
    rows = {(float(r["ratio"]), r["pooling"]): r for r in read_table(tmp_path / "dots" / "trials.csv")}
    assert set(rows) == {(1.0, "none"), (1.0, "avg:2"), (2.0, "none"), (2.0, "avg:2")}
    assert all(r["status"] == "done" and r["accuracy"] is not None for r in rows.values())
    flops = {key: float(row["flops_per_page"]) for key, row in rows.items()}
    assert flops[2.0, "none"] < flops[1.0, "none"] and flops[2.0, "avg:2"] < flops[1.0, "avg:2"]  # along the ratio axis
    assert flops[1.0, "avg:2"] < flops[1.0, "none"] and flops[2.0, "avg:2"] < flops[2.0, "none"]  # along the pooling axis
