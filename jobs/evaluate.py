"""Evaluation job: score a model (optionally with a LoRA adapter) on a dataset, write one JSON.

    python -m jobs.evaluate --model PATH --data PATH [--split test] [--limit N] [--adapter PATH]
        [--mode mcq|open|both] [--max-pixels N] [--trust-remote-code] [--batch-size 16]
        [--max-new-tokens 64] [--out results.json]

Runs in one process without Ray, so it works on a laptop and as a Ray job's entrypoint
alike. The JSON's ``metrics`` block is flat and its names are stable (``cer``,
``char_accuracy``, ``exact_match``, ``mc_accuracy``, ``mc_open_accuracy``, ``pages_per_s``...), so a Ray Tune
sweep can report it as is; a metric whose records are absent from the data is left out
rather than set to null.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from launch.one_process import UsageError, run_command

COLUMN_FIELDS = ("image", "text", "question", "choices", "answer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (plain, compressed or merged) or hub id")
    parser.add_argument("--data", required=True, help="dataset: parquet file/folder, save_to_disk or imagefolder folder")
    parser.add_argument("--split", help="split of the dataset (e.g. test)")
    parser.add_argument("--limit", type=int, help="evaluate at most this many records")
    parser.add_argument("--shuffle-seed", type=int, help="shuffle rows with this seed before --limit")
    parser.add_argument("--column", action="append", default=[], metavar="FIELD=NAME",
                        help=f"dataset column for a record field ({', '.join(COLUMN_FIELDS)}); NAME 'none' unsets it")
    parser.add_argument("--adapter", help="PEFT LoRA adapter folder loaded (and merged) on top of --model")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the checkpoint's own modelling code, as the published dots.ocr needs (off by default)")
    parser.add_argument("--mode", choices=("mcq", "open", "both"), default="mcq",
                        help="multiple-choice rows: mcq ranks the options by likelihood; open lets the model write its answer "
                        "and checks which option it names; both (OCR rows are always generated)")
    parser.add_argument("--max-pixels", type=int, help="pixel budget of each image (the processor's max_pixels), as the engines' option")
    parser.add_argument("--batch-size", type=int, default=16, help="records per generate call")
    parser.add_argument("--choice-batch-size", type=int, default=8, help="(record, choice) pairs per forward pass")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--prompt", help="instruction for records without a question (default: the training prompt)")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto (GPU when visible) or a device such as cuda:0")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"),
                        help="auto: float32 on CPU, bfloat16 on GPUs that have it")
    parser.add_argument("--no-normalize", action="store_true", help="count whitespace differences in CER and exact match")
    parser.add_argument("--samples", type=int, default=5, help="(prediction, reference) pairs kept in the JSON")
    parser.add_argument("--out", type=Path, help="write the results JSON here")
    return parser


def parse_columns(pairs: list[str]) -> dict[str, str | None]:
    columns: dict[str, str | None] = {}
    for pair in pairs:
        field, sep, name = pair.partition("=")
        if not sep or field not in COLUMN_FIELDS or not name:
            raise UsageError(f"--column {pair!r}: expected FIELD=NAME with FIELD one of {', '.join(COLUMN_FIELDS)}")
        columns[field] = None if name.lower() == "none" else name
    return columns


def model_source(args: argparse.Namespace) -> Any:
    from vlm.loading import ModelSource

    return ModelSource.on_device(args.model, args.device, args.dtype, adapter=args.adapter, trust_remote_code=args.trust_remote_code)


def load_records(args: argparse.Namespace) -> list[Any]:
    """The dataset's records; the data module is imported here so the job imports without it."""
    from training.data.sources import DatasetSpec, DataSourceError, iter_records

    spec_fields: dict[str, Any] = dict(path=args.data, split=args.split, limit=args.limit, shuffle_seed=args.shuffle_seed)
    columns = parse_columns(args.column)
    if columns:
        spec_fields["columns"] = columns
    try:
        records = list(iter_records(DatasetSpec(**spec_fields)))
    except DataSourceError as exc:
        raise UsageError(f"data {args.data}: {exc}") from exc
    if not records:
        raise UsageError(f"data {args.data}: no usable records")
    return records


def check_paths(args: argparse.Namespace) -> None:
    """Fail before loading anything when a local path is missing (the usual typo)."""
    from vlm.loading import looks_like_path

    if not Path(args.data).expanduser().exists():
        raise UsageError(f"data path {args.data} does not exist")
    for flag, value in (("model", args.model), ("adapter", args.adapter)):
        if value and looks_like_path(value) and not Path(value).expanduser().exists():
            raise UsageError(f"{flag} path {value} does not exist")
    if args.batch_size < 1 or args.choice_batch_size < 1 or args.max_new_tokens < 1:
        raise UsageError("--batch-size, --choice-batch-size and --max-new-tokens must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")


def set_max_pixels(processor: Any, max_pixels: int) -> dict[str, int]:
    """Cap the processor's pixel budget (the floor follows when it is above the cap); returns the budget in force."""
    from compression.resolution import pixel_budget, set_pixel_budget

    try:
        low, _ = pixel_budget(processor)
        low, high = set_pixel_budget(processor, min(low, max_pixels), max_pixels)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--max-pixels {max_pixels}: {exc}") from exc
    return {"min_pixels": low, "max_pixels": high}


def flat_metrics(scores: dict[str, Any], seconds: float, count: int) -> dict[str, float]:
    """The sweep-facing numbers under fixed names; absent sections add no key."""
    metrics: dict[str, float] = {}
    if "ocr" in scores:
        metrics.update({key: scores["ocr"][key] for key in ("cer", "char_accuracy", "exact_match")})
    if "multiple_choice" in scores:
        metrics["mc_accuracy"] = scores["multiple_choice"]["accuracy"]
    if "open_answer" in scores:
        metrics["mc_open_accuracy"] = scores["open_answer"]["accuracy"]
    metrics["seconds"] = seconds
    metrics["pages_per_s"] = count / seconds if seconds > 0 else 0.0
    return metrics


def summary_line(results: dict[str, Any]) -> str:
    m = results["metrics"]
    parts = [f"{results['data']['records']} records"]
    if "cer" in m:
        parts.append(f"CER {m['cer']:.4f} (char acc {m['char_accuracy']:.4f}, exact {m['exact_match']:.3f})")
    if "mc_accuracy" in m:
        parts.append(f"MC accuracy {m['mc_accuracy']:.3f}")
    if "mc_open_accuracy" in m:
        parts.append(f"MC open-answer accuracy {m['mc_open_accuracy']:.3f}")
    parts.append(f"{m['pages_per_s']:.2f} pages/s")
    return f"evaluate {results['model']['path']}: " + ", ".join(parts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from training.evaluate import evaluate_records
    from vlm.loading import ModelLoadError, load_model_and_processor

    check_paths(args)
    records = load_records(args)
    source = model_source(args)
    started = time.perf_counter()
    try:
        model, processor = load_model_and_processor(source)  # any family of vlm.families
    except ModelLoadError as exc:
        raise UsageError(str(exc)) from exc
    budget = set_max_pixels(processor, args.max_pixels) if args.max_pixels else None
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = evaluate_records(
        model,
        processor,
        records,
        batch_size=args.batch_size,
        choice_batch_size=args.choice_batch_size,
        max_new_tokens=args.max_new_tokens,
        prompt=args.prompt,
        normalize_text=not args.no_normalize,
        num_samples=args.samples,
        mode=args.mode,
    )
    seconds = time.perf_counter() - started
    return {
        "metrics": flat_metrics(scores, seconds, len(records)),
        "model": {
            "path": args.model,
            "adapter": args.adapter,
            "device": str(model.device),
            "dtype": str(getattr(model, "dtype", source.dtype)).removeprefix("torch."),
            "load_seconds": load_seconds,
        },
        "data": {"path": args.data, "split": args.split, "limit": args.limit, "records": len(records)},
        "settings": {
            "batch_size": args.batch_size,
            "choice_batch_size": args.choice_batch_size,
            "max_new_tokens": args.max_new_tokens,
            "prompt": args.prompt,
            "normalize": not args.no_normalize,
            "mode": args.mode,
            "pixel_budget": budget,
        },
        **scores,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, evaluate, write and print; returns the results. Bad arguments exit with code 2."""
    return run_command("jobs.evaluate", build_parser(), argv, run, summary_line, json_out=lambda args: args.out)


if __name__ == "__main__":
    main()
