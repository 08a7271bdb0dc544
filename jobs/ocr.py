"""OCR job: PDFs and page images in, one JSON report (and Markdown) per document out.

    python -m jobs.ocr INPUT... --out DIR [--config ray_config.yaml] [--set key=value ...]

Runs on an embedded local Ray by default, joins RAY_ADDRESS when set (as under
``ray job submit``), or submits itself as a Ray job when cluster.address is http(s)://.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from configuration import ConfigError, load_config
from configuration.loader import to_yaml
from configuration.schema import AppConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docvlm-ocr", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="PDF/PNG/JPEG/TIFF files, directories (recursive) or globs")
    parser.add_argument("--out", required=True, type=Path, help="output directory (one report per document)")
    parser.add_argument("--config", action="append", type=Path, default=None,
                        help="config file(s), later ones win (default: ./ray_config.yaml if present)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set ocr.render.dpi=200 (value parsed as YAML)")
    parser.add_argument("--pages", help="pages of every document, e.g. 1-3,7 (= --set ocr.inputs.pages=...)")
    parser.add_argument("--max-pages", type=int, help="at most this many pages per document")
    parser.add_argument("--dpi", type=int, help="rasterization DPI (= --set ocr.render.dpi=...)")
    parser.add_argument("--address", help="auto | local | ray://host:10001 | http://host:8265")
    parser.add_argument("--combined", action="store_true", help="also write the DOTS+Gemma-style page list")
    parser.add_argument("--no-markdown", action="store_true", help="skip the Markdown export")
    parser.add_argument("--force", action="store_true", help="redo documents whose report is already there")
    parser.add_argument("--retry-failed", action="store_true", help="on resume, redo documents that have failures")
    parser.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    return parser


def config_from_args(args: argparse.Namespace) -> AppConfig:
    paths = args.config
    if paths is None:
        default = Path("ray_config.yaml")
        paths = [default] if default.exists() else []
    overrides = list(args.overrides)
    shortcuts = {
        "ocr.inputs.pages": args.pages,
        "ocr.inputs.max_pages": args.max_pages,
        "ocr.render.dpi": args.dpi,
        "cluster.address": args.address,
        "ocr.output.combined": True if args.combined else None,
        "ocr.output.markdown": False if args.no_markdown else None,
    }
    # Quote string shortcuts so YAML keeps them as strings ("1-3" stays text).
    overrides += [f"{k}={json.dumps(v)}" for k, v in shortcuts.items() if v is not None]
    return load_config(paths, overrides)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("# effective config\n" + to_yaml(config), file=sys.stderr)
    if args.print_config:
        return 0

    from jobs.ray_session import is_job_server_address, resolve_address

    address = resolve_address(config.cluster)
    if address and is_job_server_address(address):
        from jobs.submit import submit_self

        return submit_self(address, config, argv if argv is not None else sys.argv[1:])

    from jobs.pipeline import CapacityError
    from jobs.run_ocr import run_ocr

    try:
        run_ocr(config, args.inputs, args.out, force=args.force, retry_failed=args.retry_failed)
    except CapacityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cli() -> None:
    """Console-script entry point (``docvlm-ocr``)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
