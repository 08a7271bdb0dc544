"""Markdown export: DOTS's own Markdown markers are not doubled."""

from documents.markdown import page_markdown
from documents.report import PageRecord


def test_dots_markdown_markers_are_not_doubled() -> None:
    elements = [
        {"bbox": [0, 0, 1, 1], "category": "Title", "text": "# Annual Report"},
        {"bbox": [0, 0, 1, 1], "category": "Section-header", "text": "## Results"},
        {"bbox": [0, 0, 1, 1], "category": "List-item", "text": "- first point"},
        {"bbox": [0, 0, 1, 1], "category": "Section-header", "text": "Plain header"},
        {"bbox": [0, 0, 1, 1], "category": "Text", "text": "#hashtag stays"},
    ]
    markdown = page_markdown(PageRecord(page_number=1, width=10, height=10, scale=1.0, ocr_pass_result=elements))
    assert markdown.split("\n\n") == ["# Annual Report", "## Results", "- first point", "## Plain header", "#hashtag stays"]
