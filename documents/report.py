"""The per-document report: pydantic models, from which ``schemas/report.schema.json`` is generated.

Format version 1.0. A report lists every selected page exactly once; a page either has
results or an ``error``. A document that could not be opened has ``error`` set and no pages.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engines.base import CATEGORIES

SCHEMA_VERSION = "1.0"

Category = Literal[CATEGORIES]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorInfo(Strict):
    kind: str = Field(description="short machine-readable reason, e.g. corrupt_pdf, engine_error, misnamed_file")
    message: str = Field(description="what went wrong, for people")
    stage: str | None = Field(None, description="pipeline stage that failed: read, split, layout, picture, assemble")
    attempts: int | None = Field(None, description="how many times the stage was tried")


class LayoutElement(Strict):
    bbox: list[float] = Field(min_length=4, max_length=4, description="[x0, y0, x1, y1] in page pixels")
    category: Category
    text: str = Field("", description="text; HTML for tables, LaTeX for formulas where the engine gives them; empty for pictures")


class PictureText(Strict):
    region_id: int = Field(description="index of the Picture element in this page's ocr_pass_result")
    bbox: list[float] = Field(min_length=4, max_length=4, description="the Picture element's box, page pixels")
    text: str


class PageRecord(Strict):
    page_number: int = Field(ge=1, description="1-based page number in the source document")
    width: int = Field(ge=0, description="page image width in pixels")
    height: int = Field(ge=0, description="page image height in pixels")
    scale: float = Field(description="page pixels per PDF point (1.0 for image inputs)")
    ocr_pass_result: list[LayoutElement] = Field(default_factory=list)
    picture_ocr_result: list[PictureText] = Field(default_factory=list)
    engines: dict[str, str] = Field(default_factory=dict, description="engine name per stage, e.g. {layout: pymupdf}")
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per stage for this page")
    info: dict[str, Any] = Field(default_factory=dict, description="engine notes, e.g. whether the page was OCR'd")
    error: ErrorInfo | None = None


class DocumentReport(Strict):
    schema_version: Literal["1.0"] = SCHEMA_VERSION
    source_path: str
    name: str = Field(description="output name derived from the input name")
    sha256: str | None = Field(description="sha256 of the source file; null if it could not be read")
    size_bytes: int | None = None
    file_type: str | None = Field(None, description="pdf, png, jpeg or tiff, from the file's content")
    page_count: int = Field(ge=0, description="pages in the source document (0 if it could not be opened)")
    pages_selected: list[int] = Field(default_factory=list, description="page numbers processed, in order")
    config_fingerprint: str = Field(description="hash of the settings that change results; resume compares it")
    engines: dict[str, str] = Field(default_factory=dict)
    pages: list[PageRecord] = Field(default_factory=list)
    pages_failed: int = 0
    error: ErrorInfo | None = Field(None, description="set when the whole document failed (unreadable, encrypted...)")
    created_at: str = Field(description="UTC time the report was written, ISO 8601")


def json_schema() -> dict[str, Any]:
    schema = DocumentReport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"docvlm-ocr-report-{SCHEMA_VERSION}"
    return schema


def combined_page_records(report: DocumentReport, page_images: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """The DOTS+Gemma pipeline's format: one record per page with image_name and both results.

    ``image_name`` is the page PNG's path relative to the output directory when one was
    written (``page_images``: page number -> path), else null: never a file that is not there.
    """
    files = page_images or {}
    return [
        {
            "image_name": files.get(page.page_number),
            "ocr_pass_result": [e.model_dump() for e in page.ocr_pass_result],
            "picture_ocr_result": [p.model_dump() for p in page.picture_ocr_result],
        }
        for page in report.pages
    ]


SCHEMA_PATH = "schemas/report.schema.json"

if __name__ == "__main__":  # python -m documents.report  -> regenerate the schema file
    import json
    from pathlib import Path

    Path(SCHEMA_PATH).write_text(json.dumps(json_schema(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
