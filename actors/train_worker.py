"""The Ray Train worker loop shared by every training job (reference, PELA distillation, LoRA).

Thin on purpose: what is trained comes from ``training.models``, the loss from
``training.objectives``, the batches from ``training.batches``; this module only does what
needs Ray Train: ranks, DeepSpeed initialisation on Ray's process group, checkpoints
through ``ray.train.report`` every K steps (every rank saves its ZeRO shard, Ray merges
them into one checkpoint directory), resuming from ``ray.train.get_checkpoint()`` after a
worker failure or a rerun under the same run name, and the final artifact saved by rank 0
into the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from configuration.plugins import Plugin
from training.settings import TrainSettings

log = logging.getLogger(__name__)

STATE_FILE = "train_state.json"
ENGINE_TAG = "engine"
MODEL_DIR = "model"


class WorkerJob(BaseModel):
    """Everything a worker needs, as plain data (it travels to the workers by pickling)."""

    model_config = ConfigDict(extra="forbid")

    kind: str  # reference | distill | lora
    settings: TrainSettings
    data_dir: str
    model_path: str | None = None  # teacher (distill) or base (lora)
    merge_lora: bool = False
    after_checkpoint: list[Plugin] = []  # called on every rank after each checkpoint: hook(step=, rank=, world=)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Entry point given to ``TorchTrainer``; ``config`` is a dumped ``WorkerJob``."""
    import ray.train

    job = WorkerJob.model_validate(config)
    settings = job.settings
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(settings.scaling.cpus_per_worker)))
    torch.manual_seed(settings.optim.seed)
    device = _device(settings)

    from training.batches import ShardPlan, batch_iterator
    from training.examples import encode_batch

    train_set = open_split(job.data_dir, settings.data.train_split, settings.data.columns)
    trainable = _build(job, train_set, device)
    for module in trainable.frozen:
        module.to(device)
    processor = trainable.processor
    encode = lambda examples: encode_batch(processor, examples)

    hooks = [plugin.build() for plugin in job.after_checkpoint]
    engine = _initialize(trainable.model, settings, world)
    state = _restore(engine)
    step = resumed_from = state.get("step", 0)
    accumulation = settings.deepspeed.gradient_accumulation_steps
    plan = ShardPlan(len(train_set), world, rank, settings.optim.micro_batch_size, settings.optim.seed)
    batches = batch_iterator(train_set, plan, encode, settings.data.columns, settings.data.prompt, start_batch=step * accumulation)
    if rank == 0:
        log.info("training %s from step %d to %d on %d worker(s); %s", job.kind, step, settings.optim.max_steps, world, trainable.info)

    window: dict[str, float] = {}
    window_steps, samples, started = 0, 0, time.perf_counter()
    while step < settings.optim.max_steps:
        for _ in range(accumulation):
            batch = {key: value.to(device) for key, value in next(batches).items()}
            loss, parts = trainable.objective(engine, batch)
            engine.backward(loss)
            engine.step()
            samples += int(batch["input_ids"].shape[0])
            for key, value in {"loss": float(loss.detach()), **parts}.items():
                window[key] = window.get(key, 0.0) + value / accumulation
        step += 1
        window_steps += 1
        final = step == settings.optim.max_steps
        if rank == 0 and settings.checkpoint.log_every_steps and step % settings.checkpoint.log_every_steps == 0:
            print(f"step {step}/{settings.optim.max_steps} loss {window['loss'] / window_steps:.4f}", flush=True)
        if step % settings.checkpoint.every_steps and not final:
            continue
        elapsed = time.perf_counter() - started
        metrics: dict[str, Any] = {key: value / window_steps for key, value in window.items()}
        metrics.update(step=step, epoch=step * accumulation / plan.batches_per_epoch, samples_per_s=samples * world / elapsed,
                       lr=engine.get_lr()[0], peak_rss_mb=_peak_rss_mb(), resumed_from_step=resumed_from)
        if device.type == "cuda":
            metrics["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        if rank == 0 and settings.data.eval_samples:
            metrics.update(_evaluate(trainable.model, processor, job, device))
        _checkpoint(engine, step, metrics, trainable if final else None, rank, job.kind, trainable.info)
        window, window_steps, samples, started = {}, 0, 0, time.perf_counter()
        for hook in hooks:
            hook(step=step, rank=rank, world=world)


def _device(settings: TrainSettings) -> torch.device:
    if settings.scaling.use_gpu:
        import ray.train.torch

        return ray.train.torch.get_device()
    return torch.device("cpu")


def open_split(data_dir: str, split: str, columns: Any) -> Any:
    """A split as a memory-mapped ``datasets.Dataset`` with decoded images; ``columns`` (``train.data.columns``) checked."""
    from training.data.sources import DatasetSpec, load_dataset_from_spec

    return load_dataset_from_spec(DatasetSpec(path=data_dir, split=split, columns=columns))


def _build(job: WorkerJob, train_set: Any, device: torch.device) -> Any:
    from training import models

    if job.kind == "reference":
        return models.reference_trainable(job.settings)
    if job.kind == "distill":
        from training.batches import calibration_batches

        return models.distill_trainable(job.model_path, job.settings, calibration_batches(job.data_dir, job.settings))
    if job.kind == "lora":
        return models.lora_trainable(job.model_path, job.settings, merged=job.merge_lora, device=device)
    raise ValueError(f"unknown training job kind {job.kind!r} (reference, distill, lora)")


def _initialize(model: torch.nn.Module, settings: TrainSettings, world: int) -> Any:
    """DeepSpeed engine over Ray's process group, with a torch AdamW and warm-up + cosine schedule."""
    import deepspeed

    from training.deepspeed_config import deepspeed_config

    optim = settings.optim
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=optim.learning_rate, weight_decay=optim.weight_decay)

    def schedule(step: int) -> float:
        if step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        progress = (step - optim.warmup_steps) / max(1, optim.max_steps - optim.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(settings, world),
        dist_init_required=False,
    )
    return engine


def _restore(engine: Any) -> dict[str, Any]:
    """Engine, optimiser and scheduler state from the latest checkpoint, if the run has one."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return {}
    with checkpoint.as_directory() as folder:
        engine.load_checkpoint(folder, tag=ENGINE_TAG)
        state = json.loads((Path(folder) / STATE_FILE).read_text())
    log.info("resumed from step %d", state["step"])
    return state


def _checkpoint(engine: Any, step: int, metrics: dict[str, Any], final: Any, rank: int, kind: str, info: dict[str, Any]) -> None:
    """Every rank writes its shard; rank 0 adds the step and, at the end, the final model."""
    import ray.train
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory() as folder:
        engine.save_checkpoint(folder, tag=ENGINE_TAG)
        if rank == 0:
            (Path(folder) / STATE_FILE).write_text(json.dumps({"step": step, "kind": kind, "metrics": metrics, "info": info}, default=str))
            if final is not None:
                final.save(Path(folder) / MODEL_DIR)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder), checkpoint_dir_name=f"step_{step:07d}")


def _evaluate(model: torch.nn.Module, processor: Any, job: WorkerJob, device: torch.device) -> dict[str, float]:
    """CER on the first ``eval_samples`` rows of the eval split (rank 0 only; others wait at the report)."""
    from training.batches import record_from_row
    from training.evaluate import predict_texts
    from training.metrics import character_error_rate

    data = job.settings.data
    split = open_split(job.data_dir, data.eval_split, data.columns)
    count = min(data.eval_samples, len(split))
    records = [record_from_row(split[i], data.columns) for i in range(count)]
    was_training = model.training
    predictions = predict_texts(model, processor, records, batch_size=32, max_new_tokens=data.max_new_tokens, prompt=data.prompt)
    model.train(was_training)
    cer = character_error_rate(predictions, [r.text for r in records])
    return {"val_cer": cer, "val_char_accuracy": max(0.0, 1.0 - cer)}


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
