"""Page and crop images on disk (``ocr.output.page_images``, ``ocr.output.crops``) and their manifest.

Users of the DOTS+Gemma pipeline look for each page as a PNG and each picture crop as a
PNG with a manifest. The PNGs are written by the Ray stage that already holds the pixels
(split for pages, crop for crops), straight into ``--out`` (shared storage on a cluster,
like the reports), so no image travels to the driver; the driver only collects their
names and writes the manifest, before the report, so a report's presence still means
every output of its document is complete. Layout, relative to ``--out``::

    NAME.images/pages/page-0001.png             page 1 as the engines saw it (rendered size)
    NAME.images/crops/page-0002-region-03.png   the crop picture OCR read for element 3 of page 2
    NAME.images.json                            the manifest: every page image and crop

Files are written atomically under fixed names, so a re-executed task or a redone
document overwrites rather than duplicates them; with both options off nothing here runs.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from documents.writer import atomic_write, atomic_write_json, confined

MANIFEST_VERSION = "1.0"
_PAGE_FILE = re.compile(r"^page-\d{4,}\.png$")
_CROP_FILE = re.compile(r"^page-\d{4,}-region-\d{2,}\.png$")


def image_folder(name: str) -> str:
    """The folder of a document's images, beside its other outputs (``NAME.json``, ``NAME.md``...), relative to ``--out``.

    Not ``NAME/``: for an image input that would be a folder called like a PNG (``scan.png/``).
    """
    return f"{name}.images"


def page_image_name(name: str, page_number: int) -> str:
    """Path of a page's PNG relative to ``--out``."""
    return f"{image_folder(name)}/pages/page-{page_number:04d}.png"


def crop_image_name(name: str, page_number: int, region_id: int) -> str:
    """Path of a picture crop's PNG relative to ``--out``."""
    return f"{image_folder(name)}/crops/page-{page_number:04d}-region-{region_id:02d}.png"


def manifest_name(name: str) -> str:
    return f"{name}.images.json"


def png_from_rgb(image: np.ndarray) -> bytes:
    """Encode an RGB (H x W x 3, uint8) array as PNG; light compression, as these are written on every page."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_image(out_dir: str | Path, relative: str, png: bytes) -> str:
    """Write ``png`` at ``relative`` inside ``out_dir`` (refusing any escape), atomically; return ``relative``."""
    atomic_write(confined(Path(out_dir), relative), png)
    return relative


# ----------------------------------------------------------------------------- driver side
@dataclass
class DocumentImages:
    """What the stages wrote for one document: page image per page number, crop entries."""

    pages: dict[int, dict[str, Any]] = field(default_factory=dict)
    pictures: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    def page_files(self) -> dict[int, str]:
        return {number: entry["file"] for number, entry in self.pages.items()}


class ImageIndex:
    """Collects, on the driver, the image entries that page rows carry (``images_json``), per document name.

    Keyed by page number and region, so a page delivered twice (a re-executed task) lists its files once.
    """

    def __init__(self) -> None:
        self._documents: dict[str, DocumentImages] = {}

    def add(self, row: dict[str, Any]) -> None:
        payload = row.get("images_json")
        if not payload:
            return
        entries = json.loads(payload)
        images = self._documents.setdefault(str(row["name"]), DocumentImages())
        page = entries.get("page")
        if page:
            images.pages[int(page["page"])] = page
        for crop in entries.get("crops", []):
            images.pictures[(int(crop["page"]), int(crop["region_id"]))] = crop

    def pop(self, name: str) -> DocumentImages:
        return self._documents.pop(name, DocumentImages())


def manifest(name: str, source_path: str, images: DocumentImages, page_images: bool, crops: bool) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "source_path": source_path,
        "page_images": page_images,
        "crops": crops,
        "pages": [images.pages[n] for n in sorted(images.pages)],
        "pictures": [images.pictures[k] for k in sorted(images.pictures)],
    }


def write_manifest(out_dir: Path, name: str, document: dict[str, Any]) -> Path:
    """Write the manifest; in each folder this run wrote, remove the images it does not list.

    Those were left by an earlier run of the document with other settings (another page
    selection, other picture regions); a folder of a kind not asked for now is left alone.
    """
    listed = {entry["file"] for entry in (*document["pages"], *document["pictures"])}
    folders = [("pages", _PAGE_FILE)] * bool(document["page_images"]) + [("crops", _CROP_FILE)] * bool(document["crops"])
    for folder, pattern in folders:
        directory = confined(out_dir, f"{image_folder(name)}/{folder}")
        if directory.is_dir():
            for path in directory.iterdir():
                if pattern.match(path.name) and f"{image_folder(name)}/{folder}/{path.name}" not in listed:
                    path.unlink(missing_ok=True)
    path = confined(out_dir, manifest_name(name))
    atomic_write_json(path, document)
    return path


def images_complete(out_dir: Path, name: str, page_images: bool, crops: bool) -> bool:
    """Whether a finished document's images, as now asked for, are on disk (resume redoes it otherwise)."""
    if not (page_images or crops):
        return True
    try:
        document = json.loads(confined(out_dir, manifest_name(name)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(document, dict) or (page_images and not document.get("page_images")) or (crops and not document.get("crops")):
        return False
    entries: Iterable[dict[str, Any]] = (*document.get("pages", []), *document.get("pictures", []))
    try:
        return all(confined(out_dir, entry["file"]).is_file() for entry in entries)
    except (KeyError, TypeError, ValueError):
        return False
