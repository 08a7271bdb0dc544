"""FLOP job: what one page costs a model, measured and analytic side by side, per phase.

    python -m jobs.flops --model M --image PAGE [--page 1] [--prompt P] [--max-pixels N]
        [--pooling avg:2] [--new-tokens K] [--trust-remote-code] [--out flops.json]

Vision encoder, prefill and per-token decode FLOPs (``compression.flops.count_flops``:
FlopCounterMode next to the formula), for one image or one page of a PDF, with the pixel
budget and the image-token pooling the OCR engine would use. Prints a short table and
the JSON (``--out`` writes it too). Runs in one process without Ray, on CPU by default:
FLOPs do not depend on the device.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from launch.one_process import UsageError, run_command

DEFAULT_PROMPT = "Extract the text of this page."


def add_page_options(parser: argparse.ArgumentParser, image_required: bool) -> None:
    """The page a FLOP count runs on (shared with ``jobs.compress``)."""
    parser.add_argument("--image", type=Path, required=image_required, help="page image (PNG/JPEG/TIFF) or PDF")
    parser.add_argument("--page", type=int, default=1, help="page of a PDF or frame of a TIFF (1-based)")
    parser.add_argument("--dpi", type=int, default=150, help="rasterization of a PDF page")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the user text the chat template wraps around the image")
    parser.add_argument("--new-tokens", type=int, default=4, help="decode steps averaged for the per-token cost")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.flops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (plain or compressed) or hub id")
    add_page_options(parser, image_required=True)
    parser.add_argument("--max-pixels", type=int, help="pixel budget of the image (the processor's max_pixels)")
    parser.add_argument("--pooling", default="none", help="image-token pooling: none | avg:K | max:K | norm_drop:R")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the checkpoint's own modelling code, as the published dots.ocr needs (off by default)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="weights' dtype (FLOPs do not change)")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    return parser


def load_page(path: Path, page: int = 1, dpi: int = 150) -> Any:
    """One page of an image file or a PDF as a PIL image, rendered as the OCR job renders it."""
    from PIL import Image

    from documents.pages import SplitLimits, split_pages
    from documents.sniff import InputRejected, check_type

    if not path.is_file():
        raise UsageError(f"image {path} does not exist")
    data = path.read_bytes()
    try:
        kind = check_type(path.name, data[:64], len(data))
        _, selected, pages = split_pages(data, kind, SplitLimits(dpi=dpi, pages=str(page)))
        rendered = next(iter(pages), None)
    except (InputRejected, ValueError) as exc:
        raise UsageError(f"image {path}: {exc}") from exc
    if rendered is None or rendered.error:
        raise UsageError(f"image {path}: page {page} {rendered.error if rendered else 'is not there'}")
    return Image.fromarray(rendered.image())


def page_flops(model: Any, processor: Any, image: Any, prompt: str, new_tokens: int) -> dict[str, Any]:
    """``FlopReport`` of one page as a dict; a family the counter does not know gives ``{"unavailable": reason}``."""
    from compression.flops import count_flops
    from engines.generative.generation import Request, encode_requests
    from vlm.families import UnsupportedModel

    try:
        return count_flops(model, encode_requests(processor, [Request(image=image, prompt=prompt)]), decode_tokens=new_tokens).to_dict()
    except UnsupportedModel as exc:
        return {"unavailable": str(exc)}


def flops_table(reports: dict[str, dict[str, Any]]) -> str:
    """Rows per phase, a measured and an analytic column per report (``{"before": ..., "after": ...}``)."""
    names = [name for name, report in reports.items() if "unavailable" not in report]
    if not names:
        return "\n".join(f"{name}: {report['unavailable']}" for name, report in reports.items())
    header = "phase".ljust(18) + "".join(f"{(name + ' measured').strip():>20}{(name + ' analytic').strip():>20}" for name in names)
    lines = [header]
    for phase in ("vision", "prefill", "decode_per_token"):
        cells = "".join(f"{reports[n][phase]['measured']:>20.4g}{reports[n][phase]['analytic']:>20.4g}" for n in names)
        lines.append(phase.ljust(18) + cells)
    first = reports[names[0]]
    lines.append(f"patches {first['patches']}, visual tokens {first['visual_tokens']}, prompt {first['prompt_tokens']} tokens")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from compression.resolution import pixel_budget, set_pixel_budget
    from compression.settings import PoolingConfig
    from engines.generative.backends import install_pooling
    from vlm.loading import ModelLoadError, ModelSource, load_model_and_processor

    if args.new_tokens < 1:
        raise UsageError("--new-tokens must be at least 1")
    try:
        pooling = PoolingConfig.model_validate(args.pooling)
    except ValueError as exc:
        raise UsageError(f"--pooling {args.pooling!r}: {exc}") from exc
    image = load_page(args.image, args.page, args.dpi)
    source = ModelSource.on_device(args.model, "cpu", args.dtype, trust_remote_code=args.trust_remote_code, attn_implementation="sdpa")
    try:
        model, processor = load_model_and_processor(source)
        low, high = pixel_budget(processor)
        if args.max_pixels is not None:
            low, high = set_pixel_budget(processor, min(low, args.max_pixels), args.max_pixels)
        model, processor = install_pooling(model, processor, pooling, args.model)
    except (ModelLoadError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    report = page_flops(model, processor, image, args.prompt, args.new_tokens)
    return {
        "model": args.model,
        "image": {"path": str(args.image), "page": args.page, "size": list(image.size)},
        "prompt": args.prompt,
        "pixel_budget": {"min_pixels": low, "max_pixels": high},
        "pooling": pooling.label,
        "flops": report,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    def show(result: dict[str, Any]) -> str:
        return f"{flops_table({'': result['flops']})}\n{json.dumps(result, indent=2)}"

    return run_command("jobs.flops", build_parser(), argv, run, show, json_out=lambda args: args.out)


if __name__ == "__main__":
    main()
