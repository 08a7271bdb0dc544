"""A wider OCR workload than the two sample pages: 8 PDF base-14 fonts x 2 sizes.

The scanned sample holds two pages in one font, too few to choose between OCR models.
These 16 pages set the same twelve sentences (numbers, units, capitals, punctuation,
names, an e-mail address) in random order, in Helvetica, Times and Courier, regular,
bold and italic, at 9 and 11 pt. The fonts are built into PyMuPDF, so every machine
renders the same pixels; the reference is each page's own text layer.
"""

from __future__ import annotations

import random

SENTENCES = (
    "The northern turbine produced 4.2 MW on 12 March 2024, up 15% from the previous quarter.",
    "Invoice No. 88-1932 was paid by ACME Corp. (Boston, MA) on time; the balance is $1,245.50.",
    "Quickly jumping over lazy foxes, the brown dog barked at the quiet zebra near Oxford Street.",
    "NASA, ESA and JAXA agreed to share telemetry from the Kepler-452b survey at 09:30 UTC.",
    "Table 3 lists pH, COD and BOD values for samples A-1 through A-12 (mg/L, n = 36).",
    "Dr. O'Neill's report, 'Grid Stability in 2030', cites 27 sources and runs to 148 pages.",
    "Her e-mail address, j.smith@example.org, appears twice in the appendix on page 7.",
    "Prices rose from EUR 3.99 to EUR 4.49 per kWh, while wages stayed flat at 2.1% a year.",
    "Section 4.1.2: the pump must stop within 0.5 s if pressure exceeds 180 kPa or 26 psi.",
    "We visited Zurich, Krakow, Gdansk, and Lyon before flying back via Frankfurt (FRA).",
    "All 16 valves were replaced; see Fig. 9 and the checklist in Annex B for details.",
    "The committee approved items 1, 3 and 5, deferred item 2, and rejected item 4 outright.",
)
#: PyMuPDF's base-14 names: Helvetica, Times and Courier, each regular, bold, italic (Courier: no italic).
FONTS = ("helv", "hebo", "heit", "tiro", "tibo", "tiit", "cour", "cobo")
SIZES_PT = (9, 11)


def font_sheet() -> tuple[bytes, list[str]]:
    """The sheet as PDF bytes, and a label per page ("helv9", ...)."""
    import pymupdf

    rng = random.Random(0)
    labels = []
    with pymupdf.open() as doc:
        for font in FONTS:
            for size in SIZES_PT:
                page = doc.new_page(width=612, height=792)
                text = "\n".join(rng.sample(SENTENCES, len(SENTENCES)))
                page.insert_textbox(pymupdf.Rect(60, 60, 560, 740), text, fontname=font, fontsize=size)
                labels.append(f"{font}{size}")
        return doc.tobytes(), labels
