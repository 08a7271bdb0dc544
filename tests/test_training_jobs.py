"""Training on Ray Train + DeepSpeed with CPU workers: loss goes down, checkpoints resume,
worker failures retry, PELA distillation lowers the distillation loss, a LoRA adapter is
served by the OCR engine, QLoRA says why it cannot run here.

Tiny models and data made by the tests; every run is a few optimiser steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actors.train_worker import STATE_FILE, WorkerJob
from configuration.plugins import Plugin
from configuration.schema import AppConfig
from launch.training import fit
from training.data.synthetic import SyntheticConfig, write_splits

pytestmark = pytest.mark.ray

TINY_SHAPE = {"hidden_size": 64, "num_layers": 2, "vision_depth": 1, "vision_hidden_size": 64, "max_pixels": 28 * 28 * 16}


@pytest.fixture(scope="module")
def lines_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred rendered lines: words and numbers, no augmentation."""
    folder = tmp_path_factory.mktemp("lines")
    write_splits(SyntheticConfig(augment=False, max_chars=12), folder, {"train": 128, "val": 16, "test": 16})
    return folder


def _config(tmp_path: Path, **train: object) -> AppConfig:
    config = AppConfig()
    settings = config.train
    settings.reference = settings.reference.model_copy(update=TINY_SHAPE)
    settings.optim = settings.optim.model_copy(update={"micro_batch_size": 8, "learning_rate": 2e-3, "warmup_steps": 2, "max_steps": 8})
    settings.checkpoint = settings.checkpoint.model_copy(
        update={"every_steps": 4, "keep": 10, "storage_path": str(tmp_path / "runs"), "max_failures": 0}
    )
    settings.data = settings.data.model_copy(update={"eval_samples": 8, "max_new_tokens": 16})
    for key, value in train.items():
        section, field = key.split("__")
        setattr(settings, section, getattr(settings, section).model_copy(update={field: value}))
    return config


def _checkpoint_states(run_dir: Path) -> list[dict]:
    states = [json.loads(path.read_text()) for path in sorted(run_dir.glob(f"step_*/{STATE_FILE}"))]
    return sorted(states, key=lambda state: state["step"])


def test_two_workers_zero2_loss_goes_down(ray_cpu, lines_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, optim__max_steps=12, checkpoint__every_steps=4)
    config.train.deepspeed.zero_stage = 2
    job = WorkerJob(kind="reference", settings=config.train, data_dir=str(lines_dir))
    state = fit(job, config, "loss-down", tmp_path / "out")

    states = _checkpoint_states(tmp_path / "runs" / "loss-down")
    assert [s["step"] for s in states] == [4, 8, 12]
    losses = [s["metrics"]["loss"] for s in states]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.9 * losses[0], losses
    assert state["metrics"]["samples_per_s"] > 0
    # the final model is a normal checkpoint folder the OCR engines load
    from vlm.loading import ModelSource, load_model_and_processor

    model, _ = load_model_and_processor(ModelSource(model=str(tmp_path / "out" / "model")))
    assert model.config.text_config.hidden_size == TINY_SHAPE["hidden_size"]


def _die_once_after(step: int, marker: Path) -> Plugin:
    """The last worker dies once after ``step``'s checkpoint (``tests.fault_hooks.DieOnceAfterStep``)."""
    return Plugin(target="tests.fault_hooks:DieOnceAfterStep", options={"step": step, "marker": str(marker)})


def test_stopped_run_resumes_from_its_checkpoint_and_failures_retry(ray_cpu, lines_dir: Path, tmp_path: Path) -> None:
    from ray.train.v2.api.exceptions import TrainingFailedError

    config = _config(tmp_path)
    marker = tmp_path / "failed-once"
    job = WorkerJob(kind="reference", settings=config.train, data_dir=str(lines_dir), after_checkpoint=[_die_once_after(4, marker)])
    # no retries allowed: the run stops after its step-4 checkpoint
    with pytest.raises(TrainingFailedError):
        fit(job, config, "resume", tmp_path / "out")
    assert marker.exists()
    assert [s["step"] for s in _checkpoint_states(tmp_path / "runs" / "resume")] == [4]

    # the same run name picks up from step 4, not from 0
    state = fit(job, config, "resume", tmp_path / "out")
    assert state["step"] == 8
    assert state["metrics"]["resumed_from_step"] == 4

    # with FailureConfig retries, a worker killed mid-run is replaced and the run resumes by itself
    config.train.checkpoint.max_failures = 1
    retry_marker = tmp_path / "failed-once-retry"
    job = WorkerJob(kind="reference", settings=config.train, data_dir=str(lines_dir), after_checkpoint=[_die_once_after(4, retry_marker)])
    state = fit(job, config, "retry", tmp_path / "out-retry")
    assert retry_marker.exists()
    assert state["step"] == 8 and state["metrics"]["resumed_from_step"] == 4


def _distillation_loss(student_dir: Path, teacher, batch) -> float:
    from compression.losses import DistillationWeights, distillation_loss
    from training.models import load_pretrained

    student, _ = load_pretrained(str(student_dir))
    with torch.no_grad():
        student_out = student(**batch, output_hidden_states=True)
        teacher_out = teacher(**batch, output_hidden_states=True)
        loss, _ = distillation_loss(student_out, teacher_out, student, DistillationWeights(), batch["attention_mask"], reference=teacher)
    return float(loss)


def test_distillation_lowers_the_students_distillation_loss(ray_cpu, lines_dir: Path, tmp_path: Path, tiny_qwen_dir: Path) -> None:
    from compression.persistence import is_compressed_checkpoint, save_compressed
    from training.batches import calibration_batches
    from training.models import distill_trainable, load_pretrained

    config = _config(tmp_path, optim__max_steps=8, optim__learning_rate=1e-3)
    config.train.distill.ratio = 3.0
    config.train.scaling.num_workers = 1
    job = WorkerJob(kind="distill", settings=config.train, data_dir=str(lines_dir), model_path=str(tiny_qwen_dir))
    fit(job, config, "distill", tmp_path / "out")
    distilled = tmp_path / "out" / "model"
    assert is_compressed_checkpoint(distilled)

    undistilled = distill_trainable(str(tiny_qwen_dir), config.train)  # the student before any training
    save_compressed(undistilled.model, undistilled.processor, tmp_path / "undistilled")
    teacher, processor = load_pretrained(str(tiny_qwen_dir))
    batch = calibration_batches(str(lines_dir), config.train)(processor)[0]
    assert sum(p.numel() for p in load_pretrained(str(distilled))[0].parameters()) < sum(p.numel() for p in teacher.parameters())
    assert _distillation_loss(distilled, teacher, batch) < _distillation_loss(tmp_path / "undistilled", teacher, batch)


def test_lowrank_only_distillation_trains_the_factors_alone_within_the_rank_limits(
    ray_cpu, lines_dir: Path, tmp_path: Path, tiny_qwen_dir: Path
) -> None:
    from PIL import Image

    from compression.lowrank import low_rank_layers
    from compression.persistence import read_ranks
    from training.models import distill_trainable, load_pretrained

    config = _config(tmp_path, optim__max_steps=3, optim__learning_rate=1e-2, optim__warmup_steps=0, checkpoint__every_steps=3)
    config.train.scaling.num_workers = 1
    config.train.distill = config.train.distill.model_copy(update={"ratio": 2.0, "trainable": "lowrank", "min_rank": 2, "max_rank": 6})
    job = WorkerJob(kind="distill", settings=config.train, data_dir=str(lines_dir), model_path=str(tiny_qwen_dir))
    state = fit(job, config, "distill-lowrank", tmp_path / "out")
    distilled_dir = tmp_path / "out" / "model"

    ranks = read_ranks(distilled_dir)["ranks"]
    assert ranks and all(2 <= rank <= 6 for rank in ranks.values()), ranks
    start = distill_trainable(str(tiny_qwen_dir), config.train).model  # the student before training (deterministic SVD)
    assert state["info"]["trainable_params"] == sum(p.numel() for layer in low_rank_layers(start).values() for p in layer.parameters())
    distilled = dict(load_pretrained(str(distilled_dir))[0].named_parameters())
    factor_names = {f"{name}.{param}" for name, layer in low_rank_layers(start).items() for param, _ in layer.named_parameters()}
    changed = {name for name, before in start.named_parameters() if not torch.equal(before, distilled[name])}
    assert changed and changed <= factor_names, sorted(changed - factor_names)[:5]  # norms, embeddings, dense layers untouched
    assert len(changed) > len(factor_names) // 2  # and the factors did train

    table = json.loads((distilled_dir / "compression.json").read_text())
    assert {layer["name"]: layer["rank"] for layer in table["layers"]} == ranks
    with Image.open(distilled_dir / "singular_values.png") as picture:
        assert picture.format == "PNG" and picture.width > 400


def test_rank_limits_are_validated() -> None:
    from training.settings import DistillSettings

    with pytest.raises(ValueError, match="max_rank 2 is below min_rank 4"):
        DistillSettings(min_rank=4, max_rank=2)
    with pytest.raises(ValueError):
        DistillSettings(max_rank=0)
    with pytest.raises(ValueError):
        DistillSettings(trainable="frozen")


@pytest.fixture(scope="module")
def choices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Multiple-choice rows (A-OKVQA-like columns): a rendered word, the question, three options, the answer index."""
    import random

    import datasets
    from PIL import Image, ImageDraw

    folder = tmp_path_factory.mktemp("choices")
    words = ["cat", "dog", "sun", "map", "key", "box", "pen", "cup", "hat", "owl", "fig", "jar"]
    rng = random.Random(0)
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "choices": datasets.Sequence(datasets.Value("string")), "answer": datasets.Value("int64")})
    for split, count in (("train", 48), ("val", 8), ("test", 6)):
        rows: dict[str, list] = {"image": [], "question": [], "choices": [], "answer": []}
        for _ in range(count):
            word, *others = rng.sample(words, 3)
            options = [word, *others]
            rng.shuffle(options)
            image = Image.new("RGB", (112, 28), "white")
            ImageDraw.Draw(image).text((4, 8), word, fill="black")
            rows["image"].append(image)
            rows["question"].append("Which word is written?")
            rows["choices"].append(options)
            rows["answer"].append(options.index(word))
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{split}.parquet"))
    return folder


def test_multiple_choice_rows_train_with_their_options_for_the_epochs_asked(
    ray_cpu, choices_dir: Path, tmp_path: Path, capsys
) -> None:
    from jobs.evaluate import main as evaluate

    config = _config(tmp_path, optim__micro_batch_size=8, optim__epochs=2.0, checkpoint__every_steps=4)
    config.train.scaling.num_workers = 1
    config.train.data = config.train.data.model_copy(
        update={"columns": config.train.data.columns.model_copy(
            update={"text": None, "question": "question", "choices": "choices", "answer": "answer"}
        )}
    )
    assert config.train.steps_for_epochs(48) == 12  # 2 passes over 48 rows, 8 per step
    job = WorkerJob(kind="reference", settings=config.train, data_dir=str(choices_dir))
    state = fit(job, config, "choices", tmp_path / "out")
    assert state["step"] == 12
    states = _checkpoint_states(tmp_path / "runs" / "choices")
    assert [s["step"] for s in states] == [4, 8, 12] and states[-1]["metrics"]["epoch"] == pytest.approx(2.0)
    losses = [s["metrics"]["loss"] for s in states]
    assert losses[-1] < losses[0], losses

    columns = ["--column", "text=none", "--column", "question=question", "--column", "choices=choices", "--column", "answer=answer"]
    results = evaluate(["--model", str(tmp_path / "out" / "model"), "--data", str(choices_dir), "--split", "test", *columns,
                        "--mode", "both", "--max-new-tokens", "6"])
    assert results["open_answer"]["count"] == results["multiple_choice"]["count"] == 6


def test_epochs_and_steps_are_one_or_the_other_on_the_command_line(capsys) -> None:
    from launch.training import common_parser

    parser = common_parser("test")
    assert parser.parse_args(["--out", "x", "--epochs", "1.5"]).epochs == 1.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--epochs", "1", "--steps", "10"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_lora_adapter_is_served_by_the_ocr_engine(ray_cpu, lines_dir: Path, tmp_path: Path, tiny_qwen_dir: Path) -> None:
    import numpy as np

    from engines.base import PageImage, PageMeta
    from engines.registry import build_engine

    config = _config(tmp_path, optim__max_steps=4, optim__learning_rate=5e-3)
    config.train.scaling.num_workers = 1
    config.train.lora = config.train.lora.model_copy(update={"preset": "minimal", "targets": "both"})
    job = WorkerJob(kind="lora", settings=config.train, data_dir=str(lines_dir), model_path=str(tiny_qwen_dir))
    state = fit(job, config, "lora", tmp_path / "out")
    adapter = tmp_path / "out" / "model" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert 0 < state["info"]["trainable_percent"] < 100

    options = {"model": str(tiny_qwen_dir), "max_new_tokens": 4, "extra_max_new_tokens": 0, "max_pixels": 224 * 224}
    base_engine = build_engine("dots", "layout", options)
    tuned_engine = build_engine("dots", "layout", {**options, "adapter": str(adapter)})
    base_weights = dict(base_engine.generator.model.named_parameters())
    changed = [name for name, p in tuned_engine.generator.model.named_parameters() if not torch.equal(p, base_weights[name])]
    assert changed, "the adapter did not change any weight of the served model"
    page = PageImage(image=np.full((120, 200, 3), 255, np.uint8), meta=PageMeta(doc_id="d", source="d.png", page_number=1, width=200, height=120))
    tuned, base = tuned_engine.layout([page])[0], base_engine.layout([page])[0]
    # the page went through the adapted model: it answers differently from the base model
    assert tuned.info["raw_output"] != base.info["raw_output"]
    base_engine.close()
    tuned_engine.close()


def test_qlora_says_why_it_cannot_run_here(lines_dir: Path, tmp_path: Path, tiny_qwen_dir: Path, capsys) -> None:
    from training.lora import quantization_support

    supported, reason = quantization_support("qlora_4bit")
    if supported:
        pytest.skip("bitsandbytes and CUDA are present: QLoRA runs here")
    from jobs.finetune_lora import main

    code = main(
        ["--base", str(tiny_qwen_dir), "--data", str(lines_dir), "--out", str(tmp_path / "q"), "--preset", "qlora_4bit", "--address", "local"]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "qlora_4bit" in error and "bitsandbytes" in error
