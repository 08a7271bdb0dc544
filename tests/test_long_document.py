"""A single long scanned PDF is read by every layout actor the node fits, not by one (``pipeline/dataflow.py``).

Ray Data hands a block of pages to one actor whole; the split stage's pages now leave it
in blocks of about ``PDF_PAGE_BLOCK_BYTES`` (the engine reads one-page PDFs), so a long document's pages spread over the pool.
"""

from __future__ import annotations

import json

import numpy as np
import pymupdf
import pytest

from jobs.ocr import main
from pipeline.dataflow import PDF_PAGE_BLOCK_BYTES

pytestmark = pytest.mark.ray

PAGES = 16


def _long_scan(path) -> None:
    """An image-only PDF whose pages are noisy grey scans, each a few hundred kilobytes as a one-page PDF."""
    noise = np.random.default_rng(0)
    with pymupdf.open() as doc:
        for _ in range(PAGES):
            grey = noise.integers(0, 256, size=(500, 400), dtype=np.uint8)
            pixmap = pymupdf.Pixmap(pymupdf.csGRAY, 400, 500, grey.tobytes(), False)
            doc.new_page(width=400, height=500).insert_image(pymupdf.Rect(0, 0, 400, 500), pixmap=pixmap)
        doc.save(path, deflate=True)


def test_a_long_scan_is_read_by_more_than_one_layout_actor(tmp_path):
    pdf = tmp_path / "long.pdf"
    _long_scan(pdf)
    assert pdf.stat().st_size > 3 * PDF_PAGE_BLOCK_BYTES  # several blocks' worth
    out = tmp_path / "out"
    code = main([
        str(pdf), "--out", str(out), "--no-markdown", "--set", "cluster.num_cpus=2", "--set", "ocr.picture.enabled=false",
        "--set", "ocr.layout.engine=tests.fault_engines:NamesItsProcess",
        "--set", "ocr.layout.pool={concurrency: [1, 2], batch_size: 2, num_cpus: 0.75}",
    ])
    assert code == 0
    pages = json.loads((out / "long.pdf.json").read_text())["pages"]
    assert [p["page_number"] for p in pages] == list(range(1, PAGES + 1))  # every page, once
    assert all(p["error"] is None for p in pages)
    assert len({p["info"]["pid"] for p in pages}) == 2  # both actors read pages of the one document
