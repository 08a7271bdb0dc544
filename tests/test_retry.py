"""A page that makes an engine raise is retried alone once, then recorded; its batch-mates still get results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

from actors.engine_actors import LayoutActor
from actors.rows import rows_to_batch
from engines import registry
from engines.base import Element, PageLayout
from engines.retry import run_isolating_failures


def test_batch_failure_isolates_the_bad_item():
    calls = []

    def call(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("cannot read this one")
        return [item.upper() for item in items]

    outcomes = run_isolating_failures(call, ["a", "bad", "c"], retries=1)
    assert [o.result for o in outcomes] == ["A", None, "C"]
    assert outcomes[1].failure.kind == "ValueError" and outcomes[1].attempts == 2
    # the failed batch is not an attempt of each item: "bad" gets 1 + retries attempts alone
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["bad"], ["c"]]


def test_flaky_item_succeeds_on_retry():
    state = {"failed": False}

    def call(items):
        if not state["failed"]:
            state["failed"] = True
            raise RuntimeError("transient")
        return items

    (outcome,) = run_isolating_failures(call, ["x"], retries=1)
    assert outcome.result == "x" and outcome.attempts == 2


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    poison_page: int = 2


class PoisonEngine:
    """Raises on one page number, works on the rest."""

    name = "poison"

    def __init__(self, options: _Options):
        self.options = options

    def layout(self, pages):
        if any(p.meta.page_number == self.options.poison_page for p in pages):
            raise RuntimeError("engine crashed on this page")
        return [PageLayout([Element([0, 0, 5, 5], "Text", f"page {p.meta.page_number}")]) for p in pages]


@pytest.fixture()
def poison_engine(monkeypatch):
    spec = registry.EngineSpec("layout", f"{__name__}:PoisonEngine", f"{__name__}:_Options", "test engine")
    monkeypatch.setitem(registry.ENGINES, "poison", spec)


def _row(page_number: int) -> dict:
    return {
        "doc_id": "d", "source_path": "/x.pdf", "page_number": page_number, "width": 4, "height": 3, "scale": 1.0,
        "pixels": np.zeros((3, 4, 3), np.uint8).tobytes(), "pdf_bytes": b"%PDF", "has_text_layer": False,
        "error_json": "", "timings_json": "",
    }


def test_layout_actor_records_the_failing_page_and_keeps_the_others(poison_engine):
    actor = LayoutActor("poison", {}, retries=1)
    batch = {k: np.array(v, dtype=object) for k, v in rows_to_batch([_row(1), _row(2), _row(3)]).items()}
    out = actor(batch)
    # No page has a picture to crop: the heavy columns are emptied after layout.
    assert set(out["pdf_bytes"]) == {b""} and set(out["pixels"]) == {b""}
    errors = [json.loads(e) if e else None for e in out["error_json"]]
    assert errors[0] is None and errors[2] is None
    assert errors[1]["stage"] == "layout" and errors[1]["attempts"] == 2
    assert "engine crashed" in errors[1]["message"]
    assert json.loads(out["layout_json"][2])[0]["text"] == "page 3"
