"""Stage functions: read, split and crop run as Ray Data CPU tasks; assemble on the driver.

Each one catches its own errors per row and records them, because Ray Data's own error
tolerance drops whole blocks. A row that already carries an error passes through the
later stages untouched, so it still reaches the report.

Page and crop PNGs (``ocr.output.page_images`` / ``crops``) are written by split and crop,
the stages that hold the pixels; rows carry only their names on (``images_json``).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from typing import Any, Iterator

import numpy as np

from actors.rows import DOC_COLUMNS, DOCUMENT_ROW, add_error, add_timing, has_bytes, has_error, plain
from documents.crops import PictureCrop, crop_pictures, render_picture_crops
from documents.images import crop_image_name, page_image_name, png_from_rgb, write_image
from documents.pages import SplitLimits, split_pages
from documents.report import PageRecord
from documents.sniff import InputRejected, check_type


def read_document(row: dict[str, Any], max_file_bytes: int) -> dict[str, Any]:
    """Read a file's bytes, hash them and sniff the type. Problems become a document error."""
    started = time.perf_counter()
    out = {
        "doc_id": row["doc_id"],
        "name": row["name"],
        "source_path": row["source_path"],
        "sha256": "",
        "size_bytes": -1,
        "file_type": "",
        "data": b"",
        "error_json": "",
        "timings_json": "",
    }
    try:
        with open(row["source_path"], "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            out["size_bytes"] = size
            if size > max_file_bytes:
                raise InputRejected("file_too_large", f"file is {size:,} bytes, over the limit of {max_file_bytes:,}")
            data = handle.read()
        out["sha256"] = hashlib.sha256(data).hexdigest()
        out["file_type"] = check_type(row["name"], data[:1024], len(data))
        out["data"] = data
    except InputRejected as exc:
        add_error(out, exc.kind, str(exc), "read")
    except OSError as exc:
        add_error(out, "unreadable_file", f"cannot read file: {exc.strerror or exc}", "read")
    add_timing(out, "read", time.perf_counter() - started)
    return out


def _document_row(row: dict[str, Any], page_count: int, selected: list[int]) -> dict[str, Any]:
    return {
        "doc_id": row["doc_id"],
        "name": row["name"],
        "source_path": row["source_path"],
        "sha256": row["sha256"],
        "size_bytes": int(row["size_bytes"]),
        "file_type": row["file_type"],
        "page_count": page_count,
        "pages_selected": json.dumps(selected),
        "expected_rows": max(1, len(selected)),
        "page_number": DOCUMENT_ROW,
        "width": 0,
        "height": 0,
        "scale": 1.0,
        "pixels": b"",
        "pdf_bytes": b"",
        "has_text_layer": False,
        "images_json": "",
        "error_json": row["error_json"],
        "timings_json": row["timings_json"],
    }


def split_document(row: dict[str, Any], limits: dict[str, Any], out_dir: str | None = None) -> Iterator[dict[str, Any]]:
    """One row per selected page (rasterized), or one document row if the file failed or no page is selected.

    With ``limits["page_png"]`` each page's PNG is written under ``out_dir`` here.
    """
    if has_error(row):
        yield _document_row(row, 0, [])
        return
    started = time.perf_counter()
    split_limits = SplitLimits(**limits)
    try:
        page_count, selected, pages = split_pages(row["data"], row["file_type"], split_limits)
    except InputRejected as exc:
        failed = _document_row(row, 0, [])
        add_error(failed, exc.kind, str(exc), "split")
        yield failed
        return
    if not selected:
        yield _document_row(row, page_count, [])
        return
    opened = time.perf_counter() - started
    previous = time.perf_counter()
    for page in pages:
        out = _document_row(row, page_count, selected)
        out.update(
            page_number=page.page_number,
            width=page.width,
            height=page.height,
            scale=page.scale,
            pixels=page.pixels,
            pdf_bytes=page.pdf_bytes,
            has_text_layer=page.has_text_layer,
            error_json="",
        )
        now = time.perf_counter()
        add_timing(out, "split", now - previous + opened / len(selected))
        previous = now
        if page.error:
            add_error(out, "render_error", page.error, "split")
        elif page.png:
            _write_page_image(out, page.png, out_dir)
        yield out


def _write_page_image(row: dict[str, Any], png: bytes, out_dir: str | None) -> None:
    """Write the page's PNG and note it in ``images_json``; a failure fails the page (it was asked for)."""
    try:
        if out_dir is None:
            raise ValueError("page images asked for without an output directory")
        file = write_image(out_dir, page_image_name(str(row["name"]), int(row["page_number"])), png)
        row["images_json"] = json.dumps({"page": {"page": int(row["page_number"]), "file": file,
                                                  "width": int(row["width"]), "height": int(row["height"])}})
    except Exception as exc:  # noqa: BLE001 - recorded on the page
        add_error(row, "image_write_error", f"cannot write the page image: {type(exc).__name__}: {exc}", "split")


def page_image(row: dict[str, Any]) -> np.ndarray | None:
    """The row's page pixels, or None where the page was not rasterized (its engine reads the PDF)."""
    if not has_bytes(row, "pixels"):
        return None
    return np.frombuffer(row["pixels"], dtype=np.uint8).reshape(int(row["height"]), int(row["width"]), 3)


def _picture_crops(row: dict[str, Any], elements: list[dict], crop: dict[str, Any]) -> list:
    """From the page's pixels where it has them, else rendered from its one-page PDF; turned upright where the
    layout engine read the page turned (``rotation_degrees`` in its info: the content's clockwise turn)."""
    image = page_image(row)
    if image is not None:
        crops = crop_pictures(image, elements, **crop)
    elif not has_bytes(row, "pdf_bytes"):
        raise ValueError("the page has Picture elements but neither pixels nor a PDF to crop them from")
    else:
        crops = render_picture_crops(
            bytes(row["pdf_bytes"]), float(row["scale"]), int(row["width"]), int(row["height"]), elements, **crop
        )
    quarters = int(json.loads(row.get("layout_info") or "{}").get("rotation_degrees", 0)) // 90 % 4
    if quarters:
        for picture in crops:
            picture.image = np.ascontiguousarray(np.rot90(picture.image, quarters))
    return crops


def crop_page(row: dict[str, Any], crop: dict[str, Any], out_dir: str | None = None) -> dict[str, Any]:
    """Cut picture regions out of a page for picture OCR; drop the page pixels and PDF afterwards.

    With ``out_dir`` (``ocr.output.crops``) each crop is also written there as the PNG picture OCR reads.
    """
    started = time.perf_counter()
    crops: list = []
    if not has_error(row) and row.get("layout_json"):
        try:
            elements = json.loads(row["layout_json"])
            if any(element.get("category") == "Picture" for element in elements):
                crops = _picture_crops(row, elements, crop)
        except Exception as exc:  # noqa: BLE001 - recorded on the page
            add_error(row, "crop_error", f"{type(exc).__name__}: {exc}", "crop")
    if crops and out_dir is not None:
        try:
            _write_crops(row, crops, out_dir, crop["padding_px"])
        except Exception as exc:  # noqa: BLE001 - recorded on the page
            add_error(row, "image_write_error", f"cannot write a picture crop: {type(exc).__name__}: {exc}", "crop")
    row["crops"] = pickle.dumps([(c.region_id, c.bbox, c.image) for c in crops]) if crops else b""
    row.pop("pixels", None)
    row.pop("pdf_bytes", None)
    add_timing(row, "crop", time.perf_counter() - started)
    return row


def _write_crops(row: dict[str, Any], crops: list[PictureCrop], out_dir: str, padding_px: int) -> None:
    """Write each crop's PNG and add its manifest entry to the row's ``images_json``."""
    entries = []
    page_number = int(row["page_number"])
    for crop in crops:
        file = write_image(out_dir, crop_image_name(str(row["name"]), page_number, crop.region_id), png_from_rgb(crop.image))
        entries.append({
            "file": file,
            "page": page_number,
            "region_id": int(crop.region_id),
            "bbox": [float(v) for v in crop.bbox],
            "crop_box": [int(v) for v in crop.box],
            "padding_px": int(padding_px),
            "upscale": round(float(crop.upscale), 4),
            "width": int(crop.image.shape[1]),
            "height": int(crop.image.shape[0]),
        })
    images = json.loads(row.get("images_json") or "{}")
    images["crops"] = entries
    row["images_json"] = json.dumps(images)


def assemble_page(row: dict[str, Any]) -> dict[str, Any]:
    """Validate the page against the report schema and reduce the row to what the driver needs."""
    started = time.perf_counter()
    row = {k: plain(v) for k, v in row.items()}
    out = {k: row[k] for k in (*DOC_COLUMNS, "page_number")}
    out["error_json"] = row.get("error_json") or ""
    out["images_json"] = row.get("images_json") or ""
    if row["page_number"] == DOCUMENT_ROW:
        out["page_json"] = ""
        return out
    timings = json.loads(row.get("timings_json") or "{}")
    timings["assemble"] = round(time.perf_counter() - started, 4)
    fields = dict(
        page_number=row["page_number"],
        width=row["width"],
        height=row["height"],
        scale=row["scale"],
        engines={stage: row[f"engine_{stage}"] for stage in ("layout", "picture") if row.get(f"engine_{stage}")},
        timings=timings,
        info=json.loads(row.get("layout_info") or "{}"),
    )
    try:
        record = PageRecord(
            **fields,
            ocr_pass_result=json.loads(row.get("layout_json") or "[]"),
            picture_ocr_result=json.loads(row.get("picture_json") or "[]"),
            error=json.loads(out["error_json"]) if out["error_json"] else None,
        )
    except Exception as exc:  # noqa: BLE001 - an engine produced something off-schema: keep the page, flag it
        add_error(out, "invalid_result", f"engine output does not fit the report schema: {exc}"[:2000], "assemble")
        record = PageRecord(**fields, error=json.loads(out["error_json"]))
    out["page_json"] = record.model_dump_json()
    return out
