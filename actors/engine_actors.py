"""Actor classes for ``map_batches``: each loads its engine once and runs it on batches.

They stay thin: decode the rows, call the engine through ``run_isolating_failures`` (so a
page that makes the engine raise is retried alone and, failing again, recorded instead
of failing the block), encode the results.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from typing import Any, Callable, Sequence

import numpy as np

from actors.rows import add_error, add_timing, batch_to_rows, has_bytes, has_error, rows_to_batch
from actors.stages import page_image
from engines.base import PageImage, PageMeta
from engines.registry import build_engine, close_engine
from engines.retry import EngineTimeout, run_isolating_failures, with_timeout

log = logging.getLogger(__name__)


class EngineHost:
    """Loads an engine once and runs it with per-page isolation and an optional per-page time limit.

    After a timeout the engine's thread may still be stuck (a hung kernel, a deadlock):
    the batch in hand is answered (the hung page becomes an error record), and the next
    batch makes the actor process exit first, so Ray restarts it with a fresh engine
    and retries that batch on it (Ray Data's actors restart and retry without limit).
    """

    kind = "layout"

    def __init__(self, engine: str, options: dict[str, Any], retries: int, page_timeout_s: float | None = None):
        self.engine = build_engine(engine, self.kind, options)
        self.retries = retries
        self.page_timeout_s = page_timeout_s
        self.poisoned = False

    def run(self, call: Callable[[Sequence[Any]], Sequence[Any]], items: Sequence[Any]) -> list[Any]:
        if self.poisoned:
            log.warning("%s engine hung on an earlier batch; restarting this actor", self.kind)
            os._exit(1)
        timed = with_timeout(call, self.page_timeout_s, on_timeout=self._poison)
        return run_isolating_failures(timed, items, self.retries)

    def _poison(self) -> None:
        self.poisoned = True

    def __del__(self) -> None:
        close_engine(getattr(self, "engine", None))


class LayoutActor(EngineHost):
    """Hosts a layout engine (pymupdf, dots, ...) chosen by name.

    ``crop_pictures``: picture OCR follows, so a page with Picture elements passes on what
    the crop stage cuts them from: its pixels, or its one-page PDF where it was not
    rasterized. Everything else heavy is dropped here, the last stage that reads it, so
    a page without pictures travels on as a few kilobytes of results.
    """

    kind = "layout"

    def __init__(self, engine: str, options: dict[str, Any], retries: int, page_timeout_s: float | None = None,
                 crop_pictures: bool = True):
        super().__init__(engine, options, retries, page_timeout_s)
        self.crop_pictures = crop_pictures

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        rows = batch_to_rows(batch)
        todo = [row for row in rows if not has_error(row) and int(row["page_number"]) > 0]
        pages = [PageImage(image=page_image(row), meta=_meta(row)) for row in todo]
        started = time.perf_counter()
        outcomes = self.run(self.engine.layout, pages)
        per_page = (time.perf_counter() - started) / max(1, len(todo))
        with_pictures: set[int] = set()  # id() of rows read without error that have a Picture element
        for row, outcome in zip(todo, outcomes):
            row["engine_layout"] = self.engine.name
            add_timing(row, "layout", per_page)
            if outcome.failure:
                failure = outcome.failure
                add_error(row, _error_kind(failure.kind), f"{failure.kind}: {failure.message}", "layout", failure.attempts)
                continue
            layout = outcome.result
            if layout.error:  # partly read: keep what was read, record the failure
                add_error(row, layout.error.kind, layout.error.message, "layout", 1 + int(layout.info.get("retries", 0)))
            row["layout_json"] = json.dumps([e.to_dict() for e in layout.elements], ensure_ascii=False)
            row["layout_info"] = json.dumps(layout.info, ensure_ascii=False)
            if not layout.error and any(e.category == "Picture" for e in layout.elements):
                with_pictures.add(id(row))
        for row in rows:
            row.setdefault("engine_layout", "")
            row.setdefault("layout_json", "")
            row.setdefault("layout_info", "")
            self._drop_page_data(row, to_crop=id(row) in with_pictures)
        return rows_to_batch(rows)

    def _drop_page_data(self, row: dict[str, Any], to_crop: bool) -> None:
        """Keep only what the crop stage cuts ``row``'s pictures from (pixels, else the PDF), if it has any to cut."""
        if not self.crop_pictures:  # no later stage reads either: drop the columns
            row.pop("pixels", None)
            row.pop("pdf_bytes", None)
            return
        kept = ("pixels" if has_bytes(row, "pixels") else "pdf_bytes") if to_crop else None
        for column in ("pixels", "pdf_bytes"):
            if column != kept:
                row[column] = b""  # emptied rather than dropped: every row of a batch keeps the same columns


class PictureOCRActor(EngineHost):
    """Hosts a picture-OCR engine (rapidocr, gemma, ...) and reads every crop of a batch in one call."""

    kind = "picture"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        rows = batch_to_rows(batch)
        jobs = []  # (row, region_id, bbox, image)
        for row in rows:
            if row.get("crops"):
                for region_id, bbox, image in pickle.loads(row["crops"]):
                    jobs.append((row, region_id, bbox, image))
        started = time.perf_counter()
        outcomes = self.run(self.engine.recognize, [job[3] for job in jobs])
        elapsed = time.perf_counter() - started
        results: dict[int, list[dict[str, Any]]] = {}
        for (row, region_id, bbox, _), outcome in zip(jobs, outcomes):
            if outcome.failure:
                failure = outcome.failure
                message = f"picture region {region_id}: {failure.kind}: {failure.message}"
                add_error(row, _error_kind(failure.kind), message, "picture", failure.attempts)
                continue
            results.setdefault(id(row), []).append({"region_id": int(region_id), "bbox": [float(v) for v in bbox], "text": outcome.result})
        for row in rows:
            had_crops = bool(row.get("crops"))
            row.pop("crops", None)
            row["picture_json"] = json.dumps(results.get(id(row), []), ensure_ascii=False)
            row["engine_picture"] = self.engine.name if had_crops else ""
            if had_crops:
                share = sum(1 for job in jobs if job[0] is row) / max(1, len(jobs))
                add_timing(row, "picture", elapsed * share)
        return rows_to_batch(rows)


def _error_kind(exception_name: str) -> str:
    return "engine_timeout" if exception_name == EngineTimeout.__name__ else "engine_error"


def _meta(row: dict[str, Any]) -> PageMeta:
    return PageMeta(
        doc_id=str(row["doc_id"]),
        source=str(row["source_path"]),
        page_number=int(row["page_number"]),
        width=int(row["width"]),
        height=int(row["height"]),
        scale=float(row["scale"]),
        pdf_bytes=bytes(row["pdf_bytes"]) if row.get("pdf_bytes") is not None else None,
        has_text_layer=bool(row["has_text_layer"]),
    )
