"""Driver side of the training jobs: one ``TorchTrainer`` run, its final artifact, evaluation.

Shared by ``jobs.train_reference``, ``jobs.distill`` and ``jobs.finetune_lora`` so that all
three have the same command-line shape, the same Ray Train setup (workers, DeepSpeed,
checkpoints, failure retries) and the same restore rule: rerunning a job with the same
``--run-name`` (default: the output folder's name and the job kind) continues from the
run's latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from configuration.schema import AppConfig
from launch.launcher import add_config_options, launch

log = logging.getLogger(__name__)


#: The training jobs' shortcut flags (argparse dest -> config key); precedence: ``launch.launcher``.
TRAINING_SHORTCUTS = {
    "workers": "train.scaling.num_workers",
    "steps": "train.optim.max_steps",
    "epochs": "train.optim.epochs",
    "gpu": "train.scaling.use_gpu",
    "trust_remote_code": "train.trust_remote_code",
}


def common_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, type=Path, help="output folder (final model, metrics JSON)")
    add_config_options(parser)
    parser.add_argument("--workers", type=int, help="Ray Train workers (= --set train.scaling.num_workers=N)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimiser steps (= --set train.optim.max_steps=N)")
    length.add_argument("--epochs", type=float, help="passes over the train split instead of --steps (= --set train.optim.epochs=E)")
    parser.add_argument("--gpu", action="store_const", const=True, help="one GPU per worker (= --set train.scaling.use_gpu=true)")
    parser.add_argument("--trust-remote-code", action="store_const", const=True,
                        help="run the checkpoint's own modelling code, as the published dots.ocr needs (= --set train.trust_remote_code=true)")
    parser.add_argument("--run-name", help="Ray Train run name; rerunning with the same name resumes from its latest checkpoint")
    return parser


def run_job(
    module: str,
    argv: list[str] | None,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace, AppConfig], dict[str, Any]],
    shortcuts: Mapping[str, str] = TRAINING_SHORTCUTS,
) -> int:
    """Parse and build the config (``launch.launcher``); submit to a job server if asked, else run ``body`` in a Ray session."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return launch(module, argv, parser, lambda args, config: _run_body(body, args, config), shortcuts)


def _run_body(body: Callable[[argparse.Namespace, AppConfig], dict[str, Any]], args: argparse.Namespace, config: AppConfig) -> int:
    from launch.ray_session import ray_connection
    from training.lora import QuantizationUnavailable
    from vlm.loading import ModelLoadError

    try:
        with ray_connection(config.cluster) as where:
            log.info("running on %s", where)
            summary = body(args, config)
    except (FileNotFoundError, ValueError, QuantizationUnavailable, ModelLoadError) as error:
        # bad input named in the message (missing path, wrong model, QLoRA without bitsandbytes)
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


def fit(job: Any, config: AppConfig, run_name: str, out_dir: Path, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Run the worker loop on ``TorchTrainer``; copy the final model to ``out_dir/model``.

    ``callbacks``: Ray Train callbacks, e.g. ``TuneReportCallback()`` when a Tune trial runs
    this (the sweep's distillation). Returns rank 0's state of the final checkpoint (step,
    metrics, job info).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from actors.train_worker import MODEL_DIR, STATE_FILE, train_loop_per_worker

    job = with_epoch_steps(job)
    settings = job.settings
    scaling = settings.scaling
    storage = settings.checkpoint.storage_path
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    env_vars = {} if scaling.use_gpu else {"DS_ACCELERATOR": "cpu"}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=job.model_dump(mode="json"),
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers, use_gpu=scaling.use_gpu, resources_per_worker={"CPU": scaling.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=settings.checkpoint.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=settings.checkpoint.keep),
            worker_runtime_env={"env_vars": env_vars},
            callbacks=callbacks,
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} ended without a checkpoint: {result.error}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with result.checkpoint.as_directory() as folder:
        state = json.loads((Path(folder) / STATE_FILE).read_text())
        source = Path(folder) / MODEL_DIR
        if not source.is_dir():
            raise RuntimeError(f"the last checkpoint of run {run_name} has no final model (step {state.get('step')})")
        target = out_dir / MODEL_DIR
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
    state["checkpoint"] = result.checkpoint.path
    return state


def with_epoch_steps(job: Any) -> Any:
    """``job`` with ``optim.max_steps`` derived from ``optim.epochs`` and the train split's size, said in the log."""
    from actors.train_worker import open_split

    settings = job.settings
    if settings.optim.epochs is None:
        return job
    rows = len(open_split(job.data_dir, settings.data.train_split, settings.data.columns))
    steps = settings.steps_for_epochs(rows)
    log.info(
        "train.optim.epochs %g = %d optimiser steps (%d rows in split %r; %d worker(s) x %d rows per micro-batch x %d "
        "accumulation per step)", settings.optim.epochs, steps, rows, settings.data.train_split, settings.scaling.num_workers,
        settings.optim.micro_batch_size, settings.deepspeed.gradient_accumulation_steps,
    )
    optim = settings.optim.model_copy(update={"max_steps": steps})
    return job.model_copy(update={"settings": settings.model_copy(update={"optim": optim})})


def evaluate_remote(
    model_dir: Path | str,
    data_dir: str,
    config: AppConfig,
    *,
    split: str | None = None,
    limit: int | None = None,
    adapter: Path | str | None = None,
    compress_first: bool = False,
) -> dict[str, Any]:
    """Score a model on a split inside a Ray task (a GPU one when training uses GPUs).

    ``adapter``: a LoRA adapter on top of ``model_dir``. ``compress_first``: score the PELA
    student that ``train.distill`` would start from (compressed, not yet distilled).
    """
    import ray

    settings = config.train
    task = ray.remote(_evaluate_task).options(
        num_cpus=settings.scaling.cpus_per_worker, num_gpus=1 if settings.scaling.use_gpu else 0
    )
    reference = task.remote(
        str(model_dir), data_dir, settings.model_dump(mode="json"), split, limit, str(adapter) if adapter else None, compress_first
    )
    return ray.get(reference)


def _evaluate_task(
    model_dir: str, data_dir: str, settings_data: dict[str, Any], split: str | None, limit: int | None, adapter: str | None, compress_first: bool
) -> dict[str, Any]:
    import torch

    from training.batches import calibration_batches
    from training.models import distill_trainable, load_pretrained
    from training.settings import TrainSettings

    settings = TrainSettings.model_validate(settings_data)
    torch.set_num_threads(max(1, int(settings.scaling.cpus_per_worker)))
    device = "cuda" if settings.scaling.use_gpu and torch.cuda.is_available() else "cpu"
    if compress_first:
        trainable = distill_trainable(model_dir, settings, calibration_batches(data_dir, settings))
        model, processor = trainable.model.to(device).eval(), trainable.processor
        extra = trainable.info
    else:
        model, processor = load_pretrained(model_dir, device, adapter=adapter, trust_remote_code=settings.trust_remote_code)
        extra = {}
    return {**score(model, processor, data_dir, settings, split=split, limit=limit), **extra}


def score(model: Any, processor: Any, data_dir: str, settings: Any, *, split: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """CER/exact match (and multiple-choice accuracy) of ``model`` on a split."""
    from training.batches import record_from_row
    from training.data.sources import DatasetSpec, load_dataset_from_spec
    from training.evaluate import evaluate_records

    data = settings.data
    dataset = load_dataset_from_spec(DatasetSpec(path=data_dir, split=split or data.eval_split, columns=data.columns))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    records = [record_from_row(dataset[i], data.columns) for i in range(count)]
    return evaluate_records(model, processor, records, batch_size=32, max_new_tokens=data.max_new_tokens, prompt=data.prompt)


def char_accuracy(scores: dict[str, Any]) -> float | None:
    """1 - CER from ``score``'s result (None when the split has no OCR rows)."""
    return scores.get("ocr", {}).get("char_accuracy")

