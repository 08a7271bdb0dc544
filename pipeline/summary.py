"""The run summary: counts, failures by kind, pages/s and seconds per stage."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from documents.report import DocumentReport


@dataclass
class RunSummary:
    documents_total: int = 0
    documents_written: int = 0
    documents_skipped: int = 0  # resumed: report already there for the same file and config
    documents_failed: int = 0  # the whole document failed (unreadable, encrypted, ...)
    pages_total: int = 0
    pages_ok: int = 0
    pages_failed: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    input_problems: list[dict[str, str]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over pages (CPU-side seconds)
    wall_seconds: float = 0.0
    pages_per_second: float = 0.0
    # Time to the first finished document: start-up (Ray Data planning, actor processes,
    # model loading) plus the first batches, i.e. how long before results start to flow.
    first_document_seconds: float | None = None
    # Pages/s from the first finished document to the end: the rate once results flow, with
    # the start-up left out, which is what a run of many more pages approaches.
    pages_per_second_after_first_document: float | None = None
    # Pages an engine generated again with a larger token budget (DOTS output cut off or invalid).
    pages_retried: int = 0
    duplicate_rows_dropped: int = 0
    config_fingerprint: str = ""
    ray: str = ""
    _started: float = field(default_factory=time.perf_counter, repr=False)
    _first_document_pages: int = field(default=0, repr=False)

    def add(self, report: DocumentReport) -> None:
        if self.first_document_seconds is None:
            self.first_document_seconds = round(time.perf_counter() - self._started, 3)
            self._first_document_pages = len(report.pages)
        self.documents_written += 1
        kinds: Counter[str] = Counter(self.failures_by_kind)
        if report.error:
            self.documents_failed += 1
            kinds[report.error.kind] += 1
        for page in report.pages:
            self.pages_total += 1
            if page.error:
                self.pages_failed += 1
                kinds[page.error.kind] += 1
            else:
                self.pages_ok += 1
            if page.info.get("retries"):
                self.pages_retried += 1
            for stage, seconds in page.timings.items():
                self.stage_seconds[stage] = round(self.stage_seconds.get(stage, 0.0) + seconds, 4)
        self.failures_by_kind = dict(kinds)

    def finish(self) -> None:
        self.wall_seconds = round(time.perf_counter() - self._started, 3)
        self.pages_per_second = round(self.pages_total / self.wall_seconds, 3) if self.wall_seconds else 0.0
        later_pages = self.pages_total - self._first_document_pages
        if self.first_document_seconds is not None and later_pages and self.wall_seconds > self.first_document_seconds:
            self.pages_per_second_after_first_document = round(
                later_pages / (self.wall_seconds - self.first_document_seconds), 3)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_started")
        data.pop("_first_document_pages")
        return data

    def render(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="OCR run summary", show_header=False)
        then = ("" if self.pages_per_second_after_first_document is None
                else f"; {self.pages_per_second_after_first_document} pages/s from then on")
        rows = [
            ("documents", f"{self.documents_total} total, {self.documents_written} written, "
             f"{self.documents_skipped} skipped (resume), {self.documents_failed} failed"),
            ("pages", f"{self.pages_total} total, {self.pages_ok} ok, {self.pages_failed} failed, "
             f"{self.pages_retried} retried with a larger token budget"),
            ("throughput", f"{self.pages_per_second} pages/s over {self.wall_seconds} s "
             f"(first document written after {self.first_document_seconds} s{then})"),
            ("seconds per stage", ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.stage_seconds.items())) or "-"),
        ]
        if self.failures_by_kind:
            rows.append(("failures", ", ".join(f"{k}: {v}" for k, v in sorted(self.failures_by_kind.items()))))
        for problem in self.input_problems:
            rows.append(("input problem", f"{problem['input']}: {problem['message']}"))
        for name, value in rows:
            table.add_row(name, value)
        Console(stderr=True).print(table)
