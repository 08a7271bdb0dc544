"""Faults injected on purpose: a killed layout actor, a killed driver. Nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from documents.report import json_schema
from jobs.ocr import main
from samples.generate import TITLE

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
NO_PICTURES = ["--set", "ocr.picture.enabled=false", "--no-markdown"]


@pytest.fixture(scope="module")
def inputs(three_reports_and_a_page) -> Path:
    return three_reports_and_a_page


def _pages(out: Path) -> dict[str, list[dict]]:
    return {path.name: json.loads(path.read_text())["pages"] for path in sorted(out.glob("*.json")) if path.name != "summary.json"}


def _layout_results(out: Path) -> dict[str, list]:
    return {name: [(p["page_number"], p["ocr_pass_result"]) for p in pages] for name, pages in _pages(out).items()}


def test_killed_layout_actor_loses_no_page(inputs, tmp_path):
    marker = tmp_path / "died"
    code = main([
        str(inputs), "--out", str(tmp_path / "out"), *NO_PICTURES, "--set", "cluster.num_cpus=2",
        "--set", "ocr.layout.engine=tests.fault_engines:DieOnce",
        "--set", f"ocr.layout.options={{marker: {json.dumps(str(marker))}, kill_on_page: 2}}",
        "--set", "ocr.layout.pool={concurrency: [1, 1], batch_size: 1}",
    ])
    assert code == 0 and marker.exists()  # the actor really was SIGKILLed mid-run
    pages = _pages(tmp_path / "out")
    assert len(pages) == 4
    for name, records in pages.items():
        expected = [1] if name.endswith(".png.json") else [1, 2]
        assert [p["page_number"] for p in records] == expected, name  # every page exactly once
        assert all(p["error"] is None and p["ocr_pass_result"] for p in records), name
        assert TITLE in json.dumps(records[0])


def test_driver_killed_then_rerun_finishes_without_redoing(inputs, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "jobs.ocr", str(inputs), "--out", str(out), *NO_PICTURES,
               "--set", "cluster.num_cpus=2", "--set", "ocr.layout.pool={concurrency: [1, 1], batch_size: 1}"]
    driver = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not any(p.name != "summary.json" for p in out.glob("*.json")):
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
        driver.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert done_before and len(done_before) < 4, "kill the driver while documents remain"
    schema = json_schema()
    for path in out.glob("*.json"):  # nothing half-written: atomic writes
        jsonschema.validate(json.loads(path.read_text()), schema)
    assert not list(out.glob("*.tmp*"))
    assert main([str(inputs), "--out", str(out), *NO_PICTURES, "--set", "cluster.num_cpus=2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents_skipped"] == len(done_before) and summary["documents_written"] == 4 - len(done_before)
    for name, mtime in done_before.items():
        assert (out / name).stat().st_mtime_ns == mtime  # finished documents were not redone
    assert len(_pages(out)) == 4
