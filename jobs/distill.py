"""PELA distillation: compress a model to a ratio, then recover its accuracy from the original.

    python -m jobs.distill --teacher MODEL --data DIR --out OUT [--ratio 2] [--workers N] [--steps N]

The teacher is the original checkpoint, frozen; the student is its low-rank copy
(``train.distill``: ratio, target modules, calibration). Loss = task cross-entropy +
hidden-state MSE + logit KL + PELA's weight-perturbation regulariser, each weighted in
``train.distill``. Training runs on Ray Train + DeepSpeed; ``OUT/model`` is a compressed
checkpoint that the OCR engines load like any other. ``OUT/metrics.json`` holds accuracy
before compression, after compression and after distillation, on ``--split`` of the data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from configuration.schema import AppConfig
from documents.writer import atomic_write_json
from launch.training import TRAINING_SHORTCUTS, char_accuracy, common_parser, evaluate_remote, fit, run_job

#: Shortcut flags (argparse dest -> config key); precedence: ``launch.launcher``.
SHORTCUTS = {**TRAINING_SHORTCUTS, "ratio": "train.distill.ratio"}


def build_parser() -> argparse.ArgumentParser:
    parser = common_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="the original model: checkpoint folder or hub id")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder or file (see training.data.sources)")
    parser.add_argument("--ratio", type=float, help="compression ratio (= --set train.distill.ratio=R)")
    parser.add_argument("--split", default="test", help="split scored before and after (default: test)")
    parser.add_argument("--eval-limit", type=int, help="score at most this many rows")
    return parser


def distill(args: argparse.Namespace, config: AppConfig) -> dict[str, Any]:
    from actors.train_worker import WorkerJob

    if not args.data.exists():
        raise FileNotFoundError(f"data {args.data} does not exist")
    out: Path = args.out.resolve()
    data = str(args.data.resolve())
    score = lambda model, **kw: evaluate_remote(model, data, config, split=args.split, limit=args.eval_limit, **kw)
    before = score(args.teacher)
    compressed = score(args.teacher, compress_first=True)
    job = WorkerJob(kind="distill", settings=config.train, data_dir=data, model_path=args.teacher)
    state = fit(job, config, args.run_name or f"{out.name}-distill-r{config.train.distill.ratio:g}", out)
    after = score(out / "model")
    summary = {
        "teacher": args.teacher,
        "model": str(out / "model"),
        "ratio": config.train.distill.ratio,
        "compression": compressed.pop("compression", None),
        "char_accuracy": {
            "before_compression": char_accuracy(before),
            "after_compression": char_accuracy(compressed),
            "after_distillation": char_accuracy(after),
        },
        "scores": {"before_compression": before, "after_compression": compressed, "after_distillation": after},
        "steps": state["step"],
        "last_report": state["metrics"],
    }
    atomic_write_json(out / "metrics.json", summary)
    print(json.dumps(summary["char_accuracy"]))
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.distill", argv, build_parser(), distill, SHORTCUTS)


if __name__ == "__main__":
    raise SystemExit(main())
