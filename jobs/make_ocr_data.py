"""Make OCR training data: rendered synthetic lines, or crops pseudo-labelled by OCR reports.

    python -m jobs.make_ocr_data synthetic --out DIR [--train N --val N --test N --kinds words,numbers,formulas
                                                      --fonts DejaVuSans.ttf,... --seed S --no-augment]
    python -m jobs.make_ocr_data from-reports REPORT_DIR --out DIR [--val-fraction 0.1 --test-fraction 0.1 --seed S]

Both write ``{split}.parquet`` files with an ``image`` (HF Image) and a ``text`` column, so
every job reads either through ``training.data.sources.DatasetSpec(path=DIR, split=...)``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
from pathlib import Path
from typing import Iterable

from pydantic import ValidationError

SPLITS = ("train", "val", "test")


class BadInput(ValueError):
    """A problem with the command line's values; main prints it and exits with 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.make_ocr_data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synthetic = commands.add_parser("synthetic", help="render synthetic text lines with exact labels")
    synthetic.add_argument("--out", required=True, type=Path, help="output folder for {split}.parquet")
    synthetic.add_argument("--train", type=int, default=2000, help="train lines (default 2000)")
    synthetic.add_argument("--val", type=int, default=200, help="validation lines (default 200)")
    synthetic.add_argument("--test", type=int, default=200, help="test lines (default 200)")
    synthetic.add_argument("--kinds", default="words,numbers", help="comma list of words, numbers, formulas")
    synthetic.add_argument("--fonts", default="DejaVuSans.ttf", help="comma list of font file names or paths")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--width", type=int, help="fixed image width in px (the reference model reads 672 px lines)")
    synthetic.add_argument("--pitch", type=int, help="fixed character pitch in px (the reference model reads 28 px cells)")
    synthetic.add_argument("--font-size", default="16,20", help="font size range in px, MIN,MAX (the reference model: 22,26)")
    synthetic.add_argument("--max-chars", type=int, default=24, help="longest word or number line")
    synthetic.add_argument("--no-augment", action="store_true", help="clean renderings (no noise, blur, rotation)")

    reports = commands.add_parser("from-reports", help="crop text elements out of OCR reports' source pages")
    reports.add_argument("report_dir", type=Path, help="the OCR job's --out folder (searched recursively)")
    reports.add_argument("--out", required=True, type=Path, help="output folder for {split}.parquet")
    reports.add_argument("--val-fraction", type=float, default=0.1)
    reports.add_argument("--test-fraction", type=float, default=0.1)
    reports.add_argument("--seed", type=int, default=0, help="changes which records land in which split")
    reports.add_argument("--split-by", choices=("record", "page", "document"), default="record",
                         help="keep every crop of a page or document in the same split (default: per record)")
    reports.add_argument("--categories", help="comma list of element categories (default: the text-bearing ones)")
    reports.add_argument("--min-chars", type=int, default=1, help="skip elements with shorter text")
    reports.add_argument("--padding", type=int, default=4, help="pixels added around each element box")
    reports.add_argument("--max-records", type=int, help="stop after this many crops")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        _check_out(args.out)
        if args.command == "synthetic":
            written = make_synthetic(args)
        else:
            written = make_from_reports(args)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for split, (path, count) in written.items():
        print(f"{split}: {count} rows -> {path}")
    return 0


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} exists and is not a folder")


def _comma_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


# ----------------------------------------------------------------------------- synthetic
def make_synthetic(args: argparse.Namespace) -> dict[str, tuple[Path, int]]:
    from training.data.synthetic import SyntheticConfig, find_font, write_splits

    sizes = {"train": args.train, "val": args.val, "test": args.test}
    negative = [f"--{split} {count}" for split, count in sizes.items() if count < 0]
    if negative:
        raise BadInput(f"counts must be >= 0: {', '.join(negative)}")
    sizes = {split: count for split, count in sizes.items() if count > 0}
    if not sizes:
        raise BadInput("nothing to write: --train, --val and --test are all 0")
    try:
        config = SyntheticConfig(
            kinds=_comma_list(args.kinds),
            fonts=_comma_list(args.fonts),
            seed=args.seed,
            augment=not args.no_augment,
            width=args.width,
            pitch=args.pitch,
            font_size=_font_size(args.font_size),
            max_chars=args.max_chars,
        )
        for font in config.fonts:
            find_font(font)
    except ValidationError as exc:
        raise BadInput(f"bad synthetic settings: {_first_error(exc)}") from None
    except FileNotFoundError as exc:
        raise BadInput(str(exc)) from None
    if not config.kinds or not config.fonts:
        raise BadInput("--kinds and --fonts need at least one entry each")
    paths = write_splits(config, args.out, sizes)
    return {split: (paths[split], sizes[split]) for split in paths}


def _font_size(value: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in value.split(","))
    except ValueError:
        raise BadInput(f"--font-size {value!r}: expected MIN,MAX in px, e.g. 22,26") from None
    if not 0 < low <= high:
        raise BadInput(f"--font-size {value!r}: need 0 < MIN <= MAX")
    return low, high


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


# ----------------------------------------------------------------------------- from reports
def make_from_reports(args: argparse.Namespace) -> dict[str, tuple[Path, int]]:
    from training.data.from_reports import records_from_reports

    fractions = (args.val_fraction, args.test_fraction)
    if any(not 0 <= f < 1 for f in fractions) or sum(fractions) >= 1:
        raise BadInput(f"--val-fraction and --test-fraction must be in [0, 1) with a sum below 1, got {fractions}")
    if not args.report_dir.is_dir():
        raise BadInput(f"report folder {args.report_dir} not found")
    try:
        records = records_from_reports(
            args.report_dir,
            categories=_comma_list(args.categories) if args.categories else None,
            min_chars=args.min_chars,
            padding_px=args.padding,
            max_records=args.max_records,
        )
    except ValueError as exc:  # unknown categories
        raise BadInput(str(exc)) from None
    rows = split_rows(records, args.val_fraction, args.test_fraction, args.seed, args.split_by)
    total = sum(len(texts) for _, texts in rows.values())
    if total == 0:
        raise BadInput(f"no records: {args.report_dir} has no reports with readable sources and text elements")
    written = write_rows(rows, args.out)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["counts"] = {split: len(texts) for split, (_, texts) in rows.items()}
    (args.out / "from_reports_config.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return written


def assign_split(key: str, val_fraction: float, test_fraction: float, seed: int) -> str:
    """A split from a hash of the record's identity: stable whatever the order of the reports,
    and adding reports later never moves an existing record to another split."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def _split_key(meta: dict, split_by: str) -> str:
    parts = [meta.get("source"), meta.get("page"), meta.get("element")]
    keep = {"document": 1, "page": 2, "record": 3}[split_by]
    return json.dumps(parts[:keep])


def split_rows(records: Iterable, val_fraction: float, test_fraction: float, seed: int, split_by: str = "record"):
    """PNG bytes and texts per split, encoded as they come so crops do not pile up as pixels."""
    rows: dict[str, tuple[list[bytes], list[str]]] = {split: ([], []) for split in SPLITS}
    for record in records:
        split = assign_split(_split_key(record.meta, split_by), val_fraction, test_fraction, seed)
        buffer = io.BytesIO()
        record.image.save(buffer, format="PNG")
        rows[split][0].append(buffer.getvalue())
        rows[split][1].append(record.text)
    return rows


def write_rows(rows: dict[str, tuple[list[bytes], list[str]]], out: Path) -> dict[str, tuple[Path, int]]:
    """``{split}.parquet`` in the synthetic splits' format; empty splits are not written (an
    empty parquet file cannot be loaded), and a stale file of that split from an earlier run is removed."""
    from datasets import Dataset, Features, Image, Value

    out.mkdir(parents=True, exist_ok=True)
    features = Features({"image": Image(), "text": Value("string")})
    written: dict[str, tuple[Path, int]] = {}
    for split, (images, texts) in rows.items():
        path = out / f"{split}.parquet"
        if not texts:
            if path.is_file():
                path.unlink()
                print(f"{split}: 0 rows; removed the stale {path}", file=sys.stderr)
            else:
                print(f"{split}: 0 rows; not written", file=sys.stderr)
            continue
        dataset = Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in images], "text": texts}, features=features)
        dataset.to_parquet(str(path))
        written[split] = (path, len(texts))
    return written


if __name__ == "__main__":
    sys.exit(main())
