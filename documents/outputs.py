"""Write one document's outputs: the JSON report, its Markdown and (optionally) the combined page list."""

from __future__ import annotations

from pathlib import Path

from documents.markdown import document_markdown
from documents.report import DocumentReport, combined_page_records
from documents.writer import atomic_write, atomic_write_json, confined, report_path


def write_document(out_dir: Path, report: DocumentReport, markdown: bool, combined: bool) -> Path:
    """Write the report last, so its presence means every other output of the document is complete."""
    if markdown:
        atomic_write(confined(out_dir, f"{report.name}.md"), document_markdown(report))
    if combined:
        atomic_write_json(confined(out_dir, f"{report.name}.pages.json"), combined_page_records(report))
    path = report_path(out_dir, report.name)
    atomic_write(path, report.model_dump_json(indent=2) + "\n")
    return path
