"""Batched against one-image-at-a-time generation, measured side by side in one run.

CPU (any machine)::

    python -m bench.generation_batching

builds the tiny Qwen2.5-VL checkpoint and prints pages/s for batch 1 and the batched
path, and their ratio. On a GPU machine::

    python -m bench.generation_batching --shape dots --device cuda --batch-sizes 1,6,18 --pages 36 --max-new-tokens 400

builds a random-weight model of dots.ocr's dimensions (weights cannot be downloaded
here; the throughput of a decoder does not depend on its weight values, only on the
token counts, which are fixed because random weights never emit end-of-sequence) and
prints pages/s and peak GPU memory per batch size. ``--model PATH`` measures a real
checkpoint instead. Needs no Ray and no PyMuPDF, so it runs on the bare GPU machine.
The reference point is 6.7 s/page, the published figure for DOTS + Gemma batched 18 on
an RTX 5000 Ada.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from engines.generative.generation import Request, TransformersGenerator
from vlm.loading import ModelSource, load_model_and_processor
from vlm.tiny import DOTS_SHAPE, save_tiny_qwen2_5_vl, text_like_pages


def measure(generator: TransformersGenerator, requests: list[Request], max_new_tokens: int, device: str) -> dict[str, float]:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    generator.generate(requests, max_new_tokens)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result = {"seconds": round(seconds, 3), "pages_per_s": round(len(requests) / seconds, 4), "s_per_page": round(seconds / len(requests), 4)}
    if device.startswith("cuda"):
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint folder (default: build one, see --shape)")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own code (the published dots.ocr needs it)")
    parser.add_argument("--shape", choices=["tiny", "dots"], default="tiny", help="size of the model built when --model is not given")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes; the first is the baseline")
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--page-size", default="448x576", help="WxH of the generated page images")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="rounds; batch sizes alternate within each round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    width, height = (int(v) for v in args.page_size.split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        model_path = args.model
        if model_path is None:
            shape = DOTS_SHAPE if args.shape == "dots" else {"max_pixels": width * height}
            dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
            model_path = str(save_tiny_qwen2_5_vl(Path(scratch) / "model", dtype=dtype, **shape))
        source = ModelSource(model=model_path, device_map=args.device if args.device != "cpu" else None,
                             trust_remote_code=args.trust_remote_code)
        model, processor = load_model_and_processor(source, role="layout")
        requests = [Request(image=img, prompt="Extract the layout.") for img in text_like_pages([(height, width)] * args.pages)]
        sizes = [int(v) for v in args.batch_sizes.split(",")]
        generators = {size: TransformersGenerator(model, processor, batch_size=size) for size in sizes}
        measure(generators[sizes[-1]], requests[: sizes[-1]], 2, args.device)  # warm-up
        runs: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
        for _ in range(args.repeats):
            for size in sizes:
                runs[size].append(measure(generators[size], requests, args.max_new_tokens, args.device))
    best = {size: min(results, key=lambda r: r["seconds"]) for size, results in runs.items()}
    baseline = best[sizes[0]]["pages_per_s"]
    print(f"model {args.model or args.shape}, {args.pages} pages {width}x{height}, {args.max_new_tokens} new tokens, device {args.device}")
    for size in sizes:
        row = best[size]
        memory = f", peak {row['peak_gib']} GiB" if "peak_gib" in row else ""
        print(f"batch {size:>3}: {row['pages_per_s']:.3f} pages/s ({row['s_per_page']:.3f} s/page){memory}; "
              f"{row['pages_per_s'] / baseline:.2f}x batch {sizes[0]}")
    print("reference: 6.7 s/page, DOTS + Gemma batched 18 on an RTX 5000 Ada (published figure)")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "best": best, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
