"""Compress job: PELA low-rank factors for a ratio, without training; the checkpoint and what it cost.

    python -m jobs.compress MODEL --ratio R --out DIR [--target both] [--min-rank N] [--max-rank N]
        [--exclude PATTERN ...] [--calibration asvd|whiten --calibration-data DATA]
        [--image PAGE] [--trust-remote-code]

Writes to DIR the compressed checkpoint (loadable by every engine and job, like the
distillation job's), ``compression.json`` (per-layer rank, parameters, reconstruction
error, energy kept; layers left dense and why), ``singular_values.png`` (each compressed
layer's spectrum with its kept rank, ``compression.spectra``) and ``summary.json``:
parameters, weight bytes and size on disk, and vision / prefill / decode FLOPs on one page
(``--image``, or a generated text-like page) before and after. The settings are the
distillation job's (``train.distill``: ``compression.settings.LowRankSettings``), so a
ratio judged here distils the same way. One process, no Ray; CPU by default.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jobs.flops import add_page_options, flops_table, load_page, page_flops
from launch.one_process import UsageError, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.compress", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="checkpoint folder or hub id")
    parser.add_argument("--ratio", type=float, required=True, help="PELA compression ratio (> 1)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the compressed checkpoint and its report")
    parser.add_argument("--target", default="both", help="language | vision | both (per vlm.families), or comma-separated module patterns")
    parser.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="extra module pattern left dense (repeatable)")
    parser.add_argument("--min-rank", type=int, default=1, help="smallest rank a compressed layer gets")
    parser.add_argument("--max-rank", type=int, help="largest rank a compressed layer gets")
    parser.add_argument("--calibration", default="none", choices=("none", "asvd", "whiten"), help="activation-aware SVD")
    parser.add_argument("--calibration-data", help="dataset the calibration batches come from (see training.data.sources)")
    parser.add_argument("--calibration-batches", type=int, default=4, help="batches of the dataset used for calibration")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the checkpoint's own modelling code, as the published dots.ocr needs (off by default)")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto or a device such as cuda:0 (the SVDs run there)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"), help="auto: float32 on CPU")
    parser.add_argument("--force", action="store_true", help="write into --out even if it already holds files")
    add_page_options(parser, image_required=False)
    return parser


def lowrank_settings(args: argparse.Namespace) -> Any:
    from compression.settings import LowRankSettings

    target = args.target if args.target in ("language", "vision", "both") else [p for p in args.target.split(",") if p]
    try:
        return LowRankSettings(
            ratio=args.ratio, target_modules=target, exclude_modules=args.exclude or None, min_rank=args.min_rank,
            max_rank=args.max_rank, calibration=args.calibration, calibration_batches=args.calibration_batches,
        )
    except ValueError as exc:
        raise UsageError(f"compression settings: {exc}") from exc


def weight_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def disk_bytes(folder: Path) -> int | None:
    """Bytes of the weight files in a local checkpoint folder; None for a hub id."""
    if not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".safetensors", ".bin", ".pt"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from compression.lowrank import compress
    from compression.persistence import save_compressed
    from compression.report import write_compression_report
    from documents.writer import atomic_write_json
    from vlm.loading import ModelLoadError, ModelSource, load_model_and_processor

    settings = lowrank_settings(args)
    if settings.calibration != "none" and not args.calibration_data:
        raise UsageError(f"--calibration {settings.calibration} needs --calibration-data (a dataset of pages like the ones served)")
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        raise UsageError(f"--out {args.out} already holds files; choose an empty folder or pass --force")
    image = load_page(args.image, args.page, args.dpi) if args.image else _generated_page()
    source = ModelSource.on_device(args.model, args.device, args.dtype, trust_remote_code=args.trust_remote_code)
    try:
        model, processor = load_model_and_processor(source)
    except ModelLoadError as exc:
        raise UsageError(str(exc)) from exc
    before = {"params": sum(p.numel() for p in model.parameters()), "weight_bytes": weight_bytes(model),
              "disk_bytes": disk_bytes(Path(args.model).expanduser())}
    flops_before = page_flops(model, processor, image, args.prompt, args.new_tokens)
    calibration = None
    if settings.calibration != "none":
        calibration = _calibrate(model, processor, settings, args)
    try:
        stats = compress(model, calibration=calibration, **settings.compress_kwargs())
    except ValueError as exc:  # no layer matches the targets, or a tower the family does not have for PELA
        raise UsageError(f"model {args.model}: {exc}") from exc
    if not stats.layers:
        raise UsageError(f"model {args.model}: no layer was compressed at ratio {settings.ratio:g} ({len(stats.skipped)} skipped: "
                         f"{next(iter(stats.skipped.values()), 'none targeted')})")
    flops_after = page_flops(model, processor, image, args.prompt, args.new_tokens)
    save_compressed(model, processor, args.out, stats)
    report = write_compression_report(stats, args.out, title=f"{args.model} at ratio {settings.ratio:g} ({stats.method})")
    after = {"params": sum(p.numel() for p in model.parameters()), "weight_bytes": weight_bytes(model), "disk_bytes": disk_bytes(args.out)}
    summary = {
        "model": args.model,
        "out": str(args.out),
        "settings": settings.model_dump(mode="json"),
        "layers_compressed": len(stats.layers),
        "layers_skipped": len(stats.skipped),
        "mean_relative_error": stats.mean_relative_error,
        "mean_energy_kept": sum(layer.energy_kept for layer in stats.layers) / len(stats.layers),
        "before": before,
        "after": after,
        "params_ratio": after["params"] / before["params"],
        "flops": {"before": flops_before, "after": flops_after},
        "files": {"stats": report["table"].name, "spectra": report["spectra"].name},
    }
    atomic_write_json(args.out / "summary.json", summary)
    return summary


def _generated_page() -> Any:
    from vlm.tiny import text_like_pages

    return text_like_pages([(1100, 850)])[0]  # a letter-size page at 100 dpi with text-like lines


def _calibrate(model: Any, processor: Any, settings: Any, args: argparse.Namespace) -> Any:
    from compression.calibration import calibrate
    from compression.lowrank import select_linear_layers
    from training.batches import calibration_batches
    from training.settings import DistillSettings, TrainSettings

    if not Path(args.calibration_data).expanduser().exists():
        raise UsageError(f"calibration data {args.calibration_data} does not exist")
    train = TrainSettings(distill=DistillSettings(**settings.model_dump()))
    names = select_linear_layers(model, settings.target_modules, settings.exclude())
    return calibrate(model, calibration_batches(str(args.calibration_data), train)(processor), names, method=settings.calibration)


def summary_lines(summary: dict[str, Any]) -> str:
    before, after = summary["before"], summary["after"]
    return (
        f"{summary['model']} -> {summary['out']}: {summary['layers_compressed']} layers factored, parameters "
        f"{before['params']:,} -> {after['params']:,} ({summary['params_ratio']:.3f}), mean energy kept "
        f"{100 * summary['mean_energy_kept']:.1f} %\n{flops_table(summary['flops'])}\n"
        f"rank table {summary['out']}/{summary['files']['stats']}, spectra {summary['out']}/{summary['files']['spectra']}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_command("jobs.compress", build_parser(), argv, run, summary_lines)  # summary.json is written into --out by run


if __name__ == "__main__":
    main()
