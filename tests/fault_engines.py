"""Engines that misbehave on purpose, loaded by import path ("tests.fault_engines:Class") in fault tests."""

from __future__ import annotations

import time
from typing import Sequence

from pydantic import BaseModel

from engines.base import Element, PageImage, PageLayout


class HangOnPage:
    """Answers every page with one Text element naming it, except that it hangs on one page number."""

    name = "hang-on-page"

    class Options(BaseModel):
        hang_on_page: int = 2
        hang_seconds: float = 3600.0

    def __init__(self, options: "HangOnPage.Options"):
        self.options = options

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        if any(page.meta.page_number == self.options.hang_on_page for page in pages):
            time.sleep(self.options.hang_seconds)
        return [
            PageLayout(elements=[Element([0, 0, 10, 10], "Text", f"page {p.meta.page_number} of {p.meta.doc_id}")])
            for p in pages
        ]
