"""Generate the sample documents: a born-digital PDF, its scanned twin and a PNG page.

Why generated: the project ships no binary test data, and a generator lets tests
and benchmarks make as many pages as they need (``--copies``). Everything is drawn
with PyMuPDF's built-in fonts, so the output is deterministic on any machine.

The born-digital PDF holds headings, paragraphs, a table, a list and an embedded
picture whose words exist only as pixels (no text layer), so they can only be
recovered by picture OCR. The scanned twin holds the same pages rasterized into an
image-only PDF, so every word must come through OCR.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pymupdf

#: Words the tests look for: they must come out of each sample.
TITLE = "Quarterly Field Report"
PICTURE_WORDS = ("SOLAR", "OUTPUT", "NORTH", "ARRAY")
BODY_WORDS = ("turbine", "maintenance", "inspection", "reservoir")

_PARAGRAPHS = [
    "The northern turbine completed its scheduled maintenance in March. Crews "
    "replaced two bearings and recalibrated the pitch controller, which reduced "
    "vibration by a third compared with the previous quarter.",
    "A visual inspection of the reservoir wall found no new cracks. Water levels "
    "stayed within the seasonal band, and the spillway gates were exercised twice "
    "without faults.",
]
_TABLE_ROWS = [
    ("Site", "Capacity MW", "Availability"),
    ("Harbor", "120", "97.5%"),
    ("Ridge", "85", "94.1%"),
    ("Valley", "64", "98.8%"),
]
_LIST_ITEMS = [
    "Order spare bearings for the southern turbine.",
    "Repaint the inspection walkway before winter.",
    "Review the reservoir sensor calibration schedule.",
]

_CSS = """
body { font-family: sans-serif; font-size: 11pt; }
h1 { font-size: 22pt; }
h2 { font-size: 15pt; }
table { border-collapse: collapse; }
td, th { border: 1px solid black; padding: 4px; }
"""


def _picture_png() -> bytes:
    """A picture whose words exist only as pixels: a chart-like panel with labels."""
    doc = pymupdf.open()
    page = doc.new_page(width=360, height=180)
    page.draw_rect(page.rect, color=None, fill=(0.86, 0.92, 1.0))
    for i, height in enumerate((60, 95, 120, 80)):
        x = 200 + i * 35
        page.draw_rect(pymupdf.Rect(x, 165 - height, x + 25, 165), color=None, fill=(0.2, 0.4, 0.8))
    page.insert_text((16, 60), f"{PICTURE_WORDS[0]} {PICTURE_WORDS[1]}", fontsize=24, fontname="hebo")
    page.insert_text((16, 110), f"{PICTURE_WORDS[2]} {PICTURE_WORDS[3]}", fontsize=24, fontname="hebo")
    pix = page.get_pixmap(dpi=200)
    return pix.tobytes("png")


def _html_page_one() -> str:
    rows = "".join(
        "<tr>" + "".join(f"<{'th' if r == 0 else 'td'}>{c}</{'th' if r == 0 else 'td'}>" for c in row) + "</tr>"
        for r, row in enumerate(_TABLE_ROWS)
    )
    return (
        f"<h1>{TITLE}</h1>"
        "<h2>1. Operations summary</h2>"
        f"<p>{_PARAGRAPHS[0]}</p><p>{_PARAGRAPHS[1]}</p>"
        "<h2>2. Plant availability</h2>"
        f"<table>{rows}</table>"
    )


def _html_page_two() -> str:
    items = "".join(f"<li>{item}</li>" for item in _LIST_ITEMS)
    return (
        "<h2>3. Solar array</h2>"
        "<p>The figure below shows the output of the north array over four weeks.</p>"
    ), (
        "<p><i>Figure 1. Weekly output of the north solar array.</i></p>"
        "<h2>4. Next steps</h2>"
        f"<ul>{items}</ul>"
    )


def make_born_digital(path: Path) -> None:
    """Two A4 pages with a text layer; the picture on page 2 has no text layer."""
    doc = pymupdf.open()
    margin = 56
    page = doc.new_page(width=595, height=842)
    page.insert_htmlbox(pymupdf.Rect(margin, margin, 595 - margin, 842 - margin), _html_page_one(), css=_CSS)
    page.insert_text((margin, 815), "Field Report - page 1", fontsize=8)

    page = doc.new_page(width=595, height=842)
    before, after = _html_page_two()
    page.insert_htmlbox(pymupdf.Rect(margin, margin, 595 - margin, 160), before, css=_CSS)
    page.insert_image(pymupdf.Rect(margin + 40, 170, margin + 400, 350), stream=_picture_png())
    page.insert_htmlbox(pymupdf.Rect(margin, 360, 595 - margin, 842 - margin), after, css=_CSS)
    page.insert_text((margin, 815), "Field Report - page 2", fontsize=8)
    doc.set_metadata({"title": TITLE, "producer": "samples.generate"})
    doc.save(path, garbage=3, deflate=True)


def make_scanned_twin(source: Path, path: Path, dpi: int = 150) -> list[bytes]:
    """Rasterize every page into an image-only PDF; returns the page PNGs."""
    src = pymupdf.open(source)
    out = pymupdf.open()
    pngs = []
    for page in src:
        png = page.get_pixmap(dpi=dpi).tobytes("png")
        pngs.append(png)
        new_page = out.new_page(width=page.rect.width, height=page.rect.height)
        new_page.insert_image(new_page.rect, stream=png)
    out.save(path, garbage=3, deflate=True)
    return pngs


def generate(out_dir: Path, copies: int = 1) -> dict[str, Path]:
    """Write the samples into ``out_dir``; ``copies`` > 1 adds numbered scanned copies for benchmarks."""
    out_dir.mkdir(parents=True, exist_ok=True)
    born = out_dir / "report.pdf"
    scanned = out_dir / "report_scanned.pdf"
    png = out_dir / "report_page1.png"
    make_born_digital(born)
    pngs = make_scanned_twin(born, scanned)
    png.write_bytes(pngs[0])
    paths = {"born_digital": born, "scanned": scanned, "png": png}
    for i in range(1, copies):
        copy = out_dir / f"report_scanned_{i:04d}.pdf"
        copy.write_bytes(scanned.read_bytes())
        paths[f"scanned_{i}"] = copy
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("samples/out"))
    parser.add_argument("--copies", type=int, default=1, help="number of scanned copies (for benchmarks)")
    args = parser.parse_args(argv)
    for name, path in generate(args.out_dir, args.copies).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
