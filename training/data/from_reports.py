"""Pseudo-labelled OCR pairs from the OCR job's reports: one crop per text element.

The reports already say where every element is (``bbox`` in page pixels) and what it
reads; re-rendering the page with the pipeline's own rasterizer (``documents.pages``) at
the page's recorded ``scale`` (page pixels per PDF point) puts those pixel coordinates
back on the same pixels, so each crop lines up with its text. The result is training data
from real documents, labelled by whichever engine wrote the reports.

Sources are only read: the report's ``source_path`` is opened for reading and never used
to write anything. A report whose source is missing or changed (sha256 differs), or a page
that no longer renders, is skipped with a warning naming it; the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image

from documents.crops import crop_box
from documents.pages import RenderedPage, SplitLimits, split_pages
from documents.report import DocumentReport, PageRecord
from documents.sniff import InputRejected, check_type
from engines.base import CATEGORIES
from training.data.records import Record

log = logging.getLogger(__name__)

#: Categories whose text is a transcription of the pixels (not HTML, not empty).
TEXT_CATEGORIES: tuple[str, ...] = (
    "Text",
    "Title",
    "Section-header",
    "List-item",
    "Caption",
    "Footnote",
    "Page-header",
    "Page-footer",
    "Formula",
)
#: A report claiming a bigger page than this is not rendered (a hostile or broken report).
MAX_PAGE_PIXELS = 200_000_000
_FILE_PIXELS_LIMIT = 200_000_000  # same decompression-bomb guard as the pipeline's default


def records_from_reports(
    report_dir: str | Path,
    *,
    categories: Iterable[str] | None = None,
    min_chars: int = 1,
    padding_px: int = 4,
    max_records: int | None = None,
) -> Iterator[Record]:
    """Yield ``Record(crop, element text, meta={source, page, bbox, category, report})`` for every
    element of the chosen categories whose stripped text has at least ``min_chars`` characters.

    Arguments are checked on the call (not on the first ``next``), so mistakes surface at once.
    """
    wanted = _check_categories(categories)
    root = Path(report_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: report folder not found")
    if min_chars < 1 or padding_px < 0 or (max_records is not None and max_records < 1):
        raise ValueError(f"need min_chars >= 1, padding_px >= 0, max_records >= 1 (got {min_chars}, {padding_px}, {max_records})")
    return _records(root, wanted, min_chars, padding_px, max_records)


def _records(root: Path, wanted: frozenset[str], min_chars: int, padding_px: int, max_records: int | None) -> Iterator[Record]:
    produced = 0
    for report_path, report in iter_reports(root):
        for record in _document_records(report_path, report, wanted, min_chars, padding_px):
            yield record
            produced += 1
            if max_records is not None and produced >= max_records:
                return


def _check_categories(categories: Iterable[str] | None) -> frozenset[str]:
    wanted = frozenset(TEXT_CATEGORIES if categories is None else categories)
    unknown = sorted(wanted - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
    return wanted


def iter_reports(root: Path) -> Iterator[tuple[Path, DocumentReport]]:
    """Every document report under ``root`` (sorted); other JSON files (summary, page lists) are passed over."""
    for path in sorted(root.rglob("*.json")):
        if path.name.endswith(".pages.json") or not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s: not readable JSON, skipped: %s", path, exc)
            continue
        if not (isinstance(data, dict) and "schema_version" in data and "pages" in data):
            continue  # summary.json and the like
        try:
            yield path, DocumentReport.model_validate(data)
        except ValueError as exc:
            log.warning("%s: not a valid report, skipped: %s", path, str(exc).splitlines()[0])


def _document_records(
    report_path: Path, report: DocumentReport, wanted: frozenset[str], min_chars: int, padding_px: int
) -> Iterator[Record]:
    if report.error is not None:
        log.info("%s: the document failed in the OCR run (%s), skipped", report_path, report.error.kind)
        return
    pages = [p for p in report.pages if p.error is None and _has_wanted(p, wanted, min_chars)]
    if not pages:
        return
    loaded = _read_source(report_path, report)
    if loaded is None:
        return
    data, kind = loaded
    for page, image in _render(report_path, report.source_path, data, kind, pages):
        for record in _page_records(page, image, wanted, min_chars, padding_px):
            record.meta.update(source=report.source_path, report=str(report_path))
            yield record


def _has_wanted(page: PageRecord, wanted: frozenset[str], min_chars: int) -> bool:
    return any(_element_text(page, i, wanted) is not None for i in range(len(page.ocr_pass_result)))


def _read_source(report_path: Path, report: DocumentReport) -> tuple[bytes, str] | None:
    """The source's bytes and type, or None (with a warning) if it is gone, changed or unreadable."""
    source = Path(report.source_path)
    if not source.is_absolute():
        source = report_path.parent / source
    if not source.is_file():
        log.warning("%s: source %s not found, skipped", report_path, source)
        return None
    try:
        data = source.read_bytes()
        kind = check_type(source.name, data[:1024], len(data))
    except (OSError, InputRejected) as exc:
        log.warning("%s: source %s unreadable, skipped: %s", report_path, source, exc)
        return None
    if report.sha256 and hashlib.sha256(data).hexdigest() != report.sha256:
        log.warning("%s: source %s changed since the report was written (sha256 differs), skipped", report_path, source)
        return None
    return data, kind


def _render(
    report_path: Path, source: str, data: bytes, kind: str, pages: list[PageRecord]
) -> Iterator[tuple[PageRecord, Image.Image]]:
    """Each page rendered at its report's scale and size. Pages are grouped by scale so the
    document is opened once per scale (usually once), not once per page."""
    groups: dict[float, list[PageRecord]] = {}
    for page in pages:
        if page.width * page.height > MAX_PAGE_PIXELS or page.width < 1 or page.height < 1:
            log.warning("%s: page %d of %s claims %dx%d px, skipped", report_path, page.page_number, source, page.width, page.height)
            continue
        groups.setdefault(page.scale, []).append(page)
    for scale, group in groups.items():
        by_number = {p.page_number: p for p in group}
        limits = SplitLimits(
            dpi=scale * 72.0,  # type: ignore[arg-type] - fit_scale divides by 72: a float DPI reproduces the scale
            max_pixels=max(p.width * p.height for p in group) * 2,  # no shrinking; the scale already has it
            max_image_pixels=_FILE_PIXELS_LIMIT,
            pages=",".join(str(n) for n in sorted(by_number)),
        )
        try:
            _, _, rendered = split_pages(data, kind, limits)
            for result in rendered:
                page = by_number.get(result.page_number)
                if page is None:
                    continue
                image = _page_image(report_path, source, result, page)
                if image is not None:
                    yield page, image
        except Exception as exc:  # noqa: BLE001 - a broken document costs its pages, not the run
            log.warning("%s: cannot render %s: %s", report_path, source, exc)


def _page_image(report_path: Path, source: str, result: RenderedPage, page: PageRecord) -> Image.Image | None:
    if result.error:
        log.warning("%s: page %d of %s failed to render, skipped: %s", report_path, page.page_number, source, result.error)
        return None
    image = Image.fromarray(result.image())
    if image.size != (page.width, page.height):
        # Rounding of the pixmap size, or an image page the pipeline shrank under max_pixels.
        image = image.resize((page.width, page.height), Image.Resampling.LANCZOS)
    return image


def _element_text(page: PageRecord, index: int, wanted: frozenset[str]) -> str | None:
    """The element's label if it is wanted; a Picture's label is its picture-OCR text."""
    element = page.ocr_pass_result[index]
    if element.category not in wanted:
        return None
    text = element.text
    if element.category == "Picture" and not text.strip():
        text = "\n".join(p.text for p in page.picture_ocr_result if p.region_id == index)
    return text.strip() or None


def _page_records(page: PageRecord, image: Image.Image, wanted: frozenset[str], min_chars: int, padding_px: int) -> Iterator[Record]:
    for index, element in enumerate(page.ocr_pass_result):
        text = _element_text(page, index, wanted)
        if text is None or len(text) < min_chars:
            continue
        box = crop_box(element.bbox, padding_px, image.width, image.height)
        if box is None:
            continue
        yield Record(
            image=image.crop(box),
            text=text,
            meta={"page": page.page_number, "bbox": list(element.bbox), "category": element.category, "element": index},
        )
