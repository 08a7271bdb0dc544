"""Markdown export of a report, in reading order (the order of ``ocr_pass_result``).

Page headers and footers are left out, as in DOTS's own Markdown export; tables stay HTML
(Markdown has no cell spans), formulas become display math, and pictures become a
placeholder followed by the text picture OCR read in them.
"""

from __future__ import annotations

import re

from documents.report import DocumentReport, PageRecord

_SKIPPED = {"Page-header", "Page-footer"}
# DOTS already writes Markdown ("# Title", "- item"); strip its marker so ours is not doubled.
_HEADING_MARK = re.compile(r"^#{1,6}\s+")
_LIST_MARK = re.compile(r"^[-*+•]\s+")


def page_markdown(page: PageRecord) -> str:
    pictures = {p.region_id: p.text for p in page.picture_ocr_result}
    blocks: list[str] = []
    for index, element in enumerate(page.ocr_pass_result):
        text = element.text.strip()
        category = element.category
        if category in _SKIPPED:
            continue
        if category == "Title":
            blocks.append(f"# {_HEADING_MARK.sub('', text)}")
        elif category == "Section-header":
            blocks.append(f"## {_HEADING_MARK.sub('', text)}")
        elif category == "List-item":
            blocks.append(f"- {_LIST_MARK.sub('', text)}")
        elif category == "Formula":
            blocks.append(f"$$\n{text}\n$$" if not text.startswith("$") else text)
        elif category == "Caption":
            blocks.append(f"*{text}*" if text else "")
        elif category == "Picture":
            picture_text = pictures.get(index, "").strip()
            block = f"![Picture {index} on page {page.page_number}]()"
            if picture_text:
                block += "\n\n" + "\n".join(f"> {line}" for line in picture_text.splitlines())
            blocks.append(block)
        else:  # Text, Table (HTML), Footnote
            blocks.append(text)
    if page.error:
        blocks.append(f"<!-- page {page.page_number} failed: {page.error.kind}: {page.error.message} -->")
    return "\n\n".join(b for b in blocks if b)


def document_markdown(report: DocumentReport) -> str:
    if report.error:
        return f"<!-- {report.source_path} failed: {report.error.kind}: {report.error.message} -->\n"
    parts = [page_markdown(page) for page in report.pages]
    return "\n\n---\n\n".join(parts).rstrip() + "\n"
