"""An engine that hangs on one page: the page times out into an error record, the actor is replaced, the run goes on."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from engines.retry import EngineTimeout, run_isolating_failures, with_timeout
from jobs.ocr import main


def test_with_timeout_raises_and_reports() -> None:
    flagged = []
    slow = with_timeout(lambda items: [time.sleep(5)] if 2 in items else list(items), 0.3, on_timeout=lambda: flagged.append(1))
    outcomes = run_isolating_failures(slow, [1, 2, 3], retries=0)
    assert [o.result for o in outcomes] == [1, None, 3]
    assert outcomes[1].failure.kind == EngineTimeout.__name__ and flagged


@pytest.mark.ray
def test_hanging_page_becomes_an_error_and_the_run_finishes(tmp_path, samples_dir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("report.pdf", "report_page1.png"):
        shutil.copy(samples_dir / name, inputs / name)
    started = time.perf_counter()
    code = main([
        str(inputs), "--out", str(tmp_path / "out"), "--no-markdown",
        "--set", "cluster.num_cpus=2", "--set", "ocr.picture.enabled=false", "--set", "ocr.retries=0",
        "--set", "ocr.page_timeout_s=3",
        "--set", "ocr.layout.engine=tests.fault_engines:HangOnPage", "--set", "ocr.layout.options={hang_on_page: 2}",
        "--set", "ocr.layout.pool={concurrency: [1, 1], batch_size: 1}",
    ])
    assert code == 0 and time.perf_counter() - started < 300
    report = json.loads((tmp_path / "out" / "report.pdf.json").read_text())
    page1, page2 = report["pages"]
    assert page1["error"] is None and page1["ocr_pass_result"][0]["text"].startswith("page 1 of")
    assert page2["error"]["kind"] == "engine_timeout" and page2["ocr_pass_result"] == []
    png = json.loads((tmp_path / "out" / "report_page1.png.json").read_text())
    assert png["pages"][0]["error"] is None
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["pages_total"] == 3 and summary["failures_by_kind"] == {"engine_timeout": 1}
