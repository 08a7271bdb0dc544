"""The row format that flows between Ray Data stages, and batch <-> row conversion.

Rows are flat (strings, ints, floats, bytes) so Arrow blocks stay simple: nested results
travel as JSON strings, images as raw RGB bytes plus their size. Heavy columns are
dropped or emptied as soon as no later stage needs them (``pixels`` and ``pdf_bytes``
after layout unless the page has pictures to crop, both after cropping, ``crops`` after
picture OCR).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

#: Columns every page row carries from the split stage to the driver.
DOC_COLUMNS = ("doc_id", "name", "source_path", "sha256", "size_bytes", "file_type", "page_count", "pages_selected", "expected_rows")

#: page_number of the single row that stands for a whole document (unreadable, or no page selected).
DOCUMENT_ROW = 0


def batch_to_rows(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    columns = list(batch)
    if not columns:
        return []
    return [dict(zip(columns, values)) for values in zip(*(batch[c] for c in columns))]


def rows_to_batch(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(value)
    return columns


def plain(value: Any) -> Any:
    """numpy scalars (as Ray hands them over) to plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def add_error(row: dict[str, Any], kind: str, message: str, stage: str, attempts: int | None = None) -> None:
    """Record the first error of a row; later stages pass an errored row through untouched."""
    if not row.get("error_json"):
        row["error_json"] = json.dumps({"kind": kind, "message": message, "stage": stage, "attempts": attempts})


def add_timing(row: dict[str, Any], stage: str, seconds: float) -> None:
    timings = json.loads(row.get("timings_json") or "{}")
    timings[stage] = round(timings.get(stage, 0.0) + seconds, 4)
    row["timings_json"] = json.dumps(timings)


def has_bytes(row: dict[str, Any], column: str) -> bool:
    """Whether ``row`` carries a non-empty binary value in ``column`` (pixels and PDFs are emptied, not removed)."""
    value = row.get(column)
    return value is not None and len(value) > 0


def has_error(row: dict[str, Any]) -> bool:
    return bool(row.get("error_json"))
