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

    def __init__(self, options: HangOnPage.Options):
        self.options = options

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        if any(page.meta.page_number == self.options.hang_on_page for page in pages):
            time.sleep(self.options.hang_seconds)
        return [
            PageLayout(elements=[Element([0, 0, 10, 10], "Text", f"page {p.meta.page_number} of {p.meta.doc_id}")])
            for p in pages
        ]


class _PyMuPDFWrapper:
    """The real CPU layout engine, so fault tests compare real results (it reads the PDF, as the real one does)."""

    name = "pymupdf"
    reads = "pdf"

    class Options(BaseModel):
        marker: str = ""  # DieOnce: file that records the one death
        kill_on_page: int = 2

    def __init__(self, options: BaseModel):
        from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions

        self.options = options
        self.engine = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions())

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        return self.engine.layout(pages)


class DieOnce(_PyMuPDFWrapper):
    """SIGKILLs its own actor process the first time it meets ``kill_on_page`` (a marker file makes it once per run)."""

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        import os
        import signal
        from pathlib import Path

        marker = Path(self.options.marker)
        if any(p.meta.page_number == self.options.kill_on_page for p in pages) and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().layout(pages)


class NamesItsProcess:
    """Reads the one-page PDF (as the real CPU engine does) slowly, answering each page with the reading process's pid."""

    name = "names-its-process"
    reads = "pdf"

    class Options(BaseModel):
        seconds_per_page: float = 0.3

    def __init__(self, options: NamesItsProcess.Options):
        self.options = options

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        import os

        time.sleep(self.options.seconds_per_page * len(pages))
        return [PageLayout(elements=[Element([0, 0, 10, 10], "Text", f"page {p.meta.page_number}")], info={"pid": os.getpid()})
                for p in pages]
