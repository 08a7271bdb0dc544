"""LoRA / QLoRA fine-tuning of an OCR model on Ray Train + DeepSpeed.

    python -m jobs.finetune_lora --base MODEL --data DIR --out OUT [--preset standard] [--targets language] [--merge] [--zip]

Presets (``train.lora.preset``): minimal (r4), standard (r16), high_capacity (r64),
qlora_4bit (NF4) and qlora_8bit; target modules are chosen for the architecture
(``--targets language | vision | both``). QLoRA needs bitsandbytes on CUDA: where that is
missing the job stops before starting Ray Train and says what is missing. Outputs:
``OUT/model/adapter`` (load it with the OCR engines' ``adapter`` option),
``OUT/model/merged`` with ``--merge``, ``OUT/lora_export.zip`` with ``--zip``, and
``OUT/metrics.json`` with accuracy on ``--split`` before and after.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from configuration.schema import AppConfig
from documents.writer import atomic_write_json
from launch.training import TRAINING_SHORTCUTS, char_accuracy, common_parser, evaluate_remote, fit, run_job

#: Shortcut flags (argparse dest -> config key); precedence: ``launch.launcher``.
SHORTCUTS = {**TRAINING_SHORTCUTS, "preset": "train.lora.preset", "targets": "train.lora.targets"}


def build_parser() -> argparse.ArgumentParser:
    parser = common_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the model to adapt: checkpoint folder or hub id")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder or file (see training.data.sources)")
    parser.add_argument("--preset", help="minimal | standard | high_capacity | qlora_4bit | qlora_8bit")
    parser.add_argument("--targets", help="language | vision | both")
    parser.add_argument("--merge", action="store_true", help="also save the adapter merged into the base weights")
    parser.add_argument("--zip", action="store_true", help="also write OUT/lora_export.zip (adapter, settings, usage)")
    parser.add_argument("--split", default="test", help="split scored before and after (default: test)")
    parser.add_argument("--eval-limit", type=int, help="score at most this many rows")
    return parser


def finetune(args: argparse.Namespace, config: AppConfig) -> dict[str, Any]:
    from actors.train_worker import WorkerJob
    from training.lora import QuantizationUnavailable, quantization_support
    from training.lora_export import export_adapter_zip

    settings = config.train.lora
    if settings.quantization:
        supported, reason = quantization_support(settings.preset)
        if not supported:
            raise QuantizationUnavailable(f"preset {settings.preset} cannot run here: {reason}")
    if not args.data.exists():
        raise FileNotFoundError(f"data {args.data} does not exist")
    out: Path = args.out.resolve()
    data = str(args.data.resolve())
    before = evaluate_remote(args.base, data, config, split=args.split, limit=args.eval_limit)
    job = WorkerJob(kind="lora", settings=config.train, data_dir=data, model_path=args.base, merge_lora=args.merge)
    state = fit(job, config, args.run_name or f"{out.name}-lora-{settings.preset}", out)
    adapter = out / "model" / "adapter"
    after = evaluate_remote(args.base, data, config, split=args.split, limit=args.eval_limit, adapter=adapter)
    summary = {
        "base": args.base,
        "adapter": str(adapter),
        "merged": str(out / "model" / "merged") if args.merge else None,
        "lora": settings.model_dump(mode="json", exclude_none=True),
        "trainable": state["info"].get("summary"),
        "char_accuracy": {"before": char_accuracy(before), "after": char_accuracy(after)},
        "scores": {"before": before, "after": after},
        "steps": state["step"],
        "last_report": state["metrics"],
    }
    if args.zip:
        from vlm.loading import ModelSource, load_config

        _, family = load_config(ModelSource(model=args.base, trust_remote_code=config.train.trust_remote_code))
        summary["export_zip"] = str(
            export_adapter_zip(adapter, out / "lora_export.zip", base_model=args.base, settings=settings, family=family,
                               extra={"char_accuracy": summary["char_accuracy"]})
        )
    atomic_write_json(out / "metrics.json", summary)
    print(state["info"].get("summary"))
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_job("jobs.finetune_lora", argv, build_parser(), finetune, SHORTCUTS)


if __name__ == "__main__":
    raise SystemExit(main())
