"""The run summary's rates: over the whole run, and from the first finished document on."""

from __future__ import annotations

from types import SimpleNamespace

import pipeline.summary
from pipeline.summary import RunSummary


def _report(pages: int) -> SimpleNamespace:
    page = SimpleNamespace(error=None, info={}, timings={"layout": 0.5})
    return SimpleNamespace(error=None, pages=[page] * pages)


def test_rate_after_the_first_document_leaves_the_start_up_out(monkeypatch):
    clock = iter([110.0, 116.0])  # the first document written, then the finish
    monkeypatch.setattr(pipeline.summary, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    summary = RunSummary(_started=100.0)
    for pages in (2, 3, 5):
        summary.add(_report(pages))
    summary.finish()
    assert summary.first_document_seconds == 10.0 and summary.wall_seconds == 16.0
    assert summary.pages_per_second == round(10 / 16, 3)
    assert summary.pages_per_second_after_first_document == round(8 / 6, 3)  # the first document's 2 pages left out
    assert "_first_document_pages" not in summary.to_dict()


def test_no_rate_after_the_first_document_when_nothing_came_after(monkeypatch):
    clock = iter([110.0, 116.0])
    monkeypatch.setattr(pipeline.summary, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    summary = RunSummary(_started=100.0)
    summary.add(_report(4))
    summary.finish()
    assert summary.pages_per_second == round(4 / 16, 3)
    assert summary.pages_per_second_after_first_document is None  # not 0.0: no page came after
