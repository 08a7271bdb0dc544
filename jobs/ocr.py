"""OCR job: PDFs and page images in, one JSON report (and Markdown) per document out.

    python -m jobs.ocr INPUT... --out DIR [--config ray_config.yaml] [--set key=value ...]

Runs on an embedded local Ray by default, joins RAY_ADDRESS when set (as under
``ray job submit``), or submits itself once as a Ray job when cluster.address is
http(s)://; config precedence and placement: ``launch.launcher``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from configuration.schema import AppConfig
from launch.launcher import add_config_options, launch

#: Shortcut flags (argparse dest -> config key); ``--address`` is every job's (``launch.launcher``).
SHORTCUTS = {
    "pages": "ocr.inputs.pages",
    "max_pages": "ocr.inputs.max_pages",
    "dpi": "ocr.render.dpi",
    "combined": "ocr.output.combined",
    "markdown": "ocr.output.markdown",
    "page_images": "ocr.output.page_images",
    "crops": "ocr.output.crops",
    "trust_remote_code": "ocr.trust_remote_code",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docvlm-ocr", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="PDF/PNG/JPEG/TIFF files, directories (recursive) or globs")
    parser.add_argument("--out", required=True, type=Path, help="output directory (one report per document)")
    add_config_options(parser)
    parser.add_argument("--pages", help="pages of every document, e.g. 1-3,7 (= --set ocr.inputs.pages=...)")
    parser.add_argument("--max-pages", type=int, help="at most this many pages per document")
    parser.add_argument("--dpi", type=int, help="rasterization DPI (= --set ocr.render.dpi=...)")
    parser.add_argument("--combined", action="store_const", const=True, help="also write the DOTS+Gemma-style page list")
    parser.add_argument("--page-images", action="store_const", const=True,
                        help="also write every page as PNG under DIR/NAME.images/pages/ (= --set ocr.output.page_images=true)")
    parser.add_argument("--crops", action="store_const", const=True,
                        help="also write every picture crop as PNG under DIR/NAME.images/crops/, with the manifest "
                             "DIR/NAME.images.json (= --set ocr.output.crops=true)")
    parser.add_argument("--no-markdown", dest="markdown", action="store_const", const=False, help="skip the Markdown export")
    parser.add_argument("--trust-remote-code", action="store_const", const=True,
                        help="let model engines run the checkpoint's own code, as the published dots.ocr needs (= --set ocr.trust_remote_code=true)")
    parser.add_argument("--force", action="store_true", help="redo documents whose report is already there")
    parser.add_argument("--retry-failed", action="store_true", help="on resume, redo documents that have failures")
    parser.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    return parser


def run(args: argparse.Namespace, config: AppConfig) -> int:
    from pipeline.dataflow import CapacityError
    from pipeline.run import run_ocr

    try:
        run_ocr(config, args.inputs, args.out, force=args.force, retry_failed=args.retry_failed)
    except CapacityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return launch("jobs.ocr", argv, build_parser(), run, SHORTCUTS, print_only=lambda args: args.print_config)


def cli() -> None:
    """Console-script entry point (``docvlm-ocr``)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
