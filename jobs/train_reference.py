"""Train the reference OCR model from scratch: a small Qwen2.5-VL on synthetic text lines.

    python -m jobs.train_reference --out runs/reference [--data DIR] [--workers N] [--steps N]

One command makes the whole thing reproducible: it writes the synthetic splits (unless
``--data`` points at existing ones), trains on Ray Train + DeepSpeed, copies the final
model to ``OUT/model`` and scores it on the held-out test split into ``OUT/metrics.json``.
This is the model the compression, distillation and sweep work is measured on when no real
checkpoint is at hand. Settings: ``train.reference`` (model shape, data) and the shared
``train.*`` harness settings; see README "Training".
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from configuration.schema import AppConfig
from documents.writer import atomic_write_json
from launch.training import TRAINING_SHORTCUTS, common_parser, evaluate_remote, fit, run_job

log = logging.getLogger(__name__)

#: Shortcut flags (argparse dest -> config key); precedence: ``launch.launcher``.
SHORTCUTS = TRAINING_SHORTCUTS


def build_parser() -> argparse.ArgumentParser:
    parser = common_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="folder with {train,val,test}.parquet (default: OUT/data, generated if missing)")
    return parser


def ensure_synthetic_data(config: AppConfig, folder: Path) -> Path:
    """Write the reference splits unless every one of them is already there."""
    from training.data.synthetic import write_splits

    reference = config.train.reference
    if all((folder / f"{split}.parquet").is_file() for split in reference.splits):
        log.info("using the synthetic splits in %s", folder)
        return folder
    started = time.perf_counter()
    write_splits(reference.synthetic, folder, reference.splits)
    log.info("wrote synthetic splits %s to %s in %.0f s", reference.splits, folder, time.perf_counter() - started)
    return folder


def train_reference(args: argparse.Namespace, config: AppConfig) -> dict[str, Any]:
    from actors.train_worker import WorkerJob

    out: Path = args.out.resolve()
    reference = config.train.reference
    config.train.optim = reference.optim
    if args.steps:
        config.train.optim.max_steps = args.steps
    data = ensure_synthetic_data(config, (args.data or out / "data").resolve())
    job = WorkerJob(kind="reference", settings=config.train, data_dir=str(data))
    started = time.perf_counter()
    state = fit(job, config, args.run_name or f"{out.name}-reference", out)
    train_seconds = time.perf_counter() - started
    scores = evaluate_remote(out / "model", str(data), config, split="test")
    summary = {
        "model": str(out / "model"),
        "data": str(data),
        "steps": state["step"],
        "train_seconds": round(train_seconds, 1),
        "last_report": state["metrics"],
        "test": scores,
        "params": state["info"].get("params"),
    }
    atomic_write_json(out / "metrics.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.train_reference", argv, build_parser(), train_reference, SHORTCUTS)


if __name__ == "__main__":
    raise SystemExit(main())
