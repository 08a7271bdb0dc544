"""Write one document's outputs: the JSON report, its Markdown, the combined page list and the image manifest."""

from __future__ import annotations

from pathlib import Path

from documents.images import DocumentImages, manifest, write_manifest
from documents.markdown import document_markdown
from documents.report import DocumentReport, combined_page_records
from documents.writer import atomic_write, atomic_write_json, confined, report_path


def write_document(
    out_dir: Path,
    report: DocumentReport,
    markdown: bool,
    combined: bool,
    images: DocumentImages | None = None,
    page_images: bool = False,
    crops: bool = False,
) -> Path:
    """Write the report last, so its presence means every other output of the document is complete.

    ``images`` lists the page and crop PNGs the pipeline's stages already wrote; with
    ``page_images`` or ``crops`` their manifest is written here, before the report.
    """
    images = images or DocumentImages()
    if markdown:
        atomic_write(confined(out_dir, f"{report.name}.md"), document_markdown(report))
    if combined:
        records = combined_page_records(report, images.page_files() if page_images else None)
        atomic_write_json(confined(out_dir, f"{report.name}.pages.json"), records)
    if page_images or crops:
        write_manifest(out_dir, report.name, manifest(report.name, report.source_path, images, page_images, crops))
    path = report_path(out_dir, report.name)
    atomic_write(path, report.model_dump_json(indent=2) + "\n")
    return path
