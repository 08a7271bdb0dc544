"""Split a document's bytes into rasterized pages (the CPU stage before the models).

Every page comes out as a ``RenderedPage``: RGB pixels at the configured DPI (scaled down
under ``max_pixels``), plus a one-page PDF so that layout engines which read the PDF
itself (PyMuPDF) see only that page. Image files become one page per frame (TIFF can hold
several). When no stage reads the whole page's pixels (``SplitLimits.pixels`` off: the
layout engine reads the PDF and picture crops are rendered from it), a PDF page is not
rasterized at all and its size in pixels is computed as the rasterizer would give it, so
boxes and reports do not change; an image page keeps only its PDF. Problems raise
``InputRejected`` (whole document) or come back as a page with ``error`` set (one page),
so nothing is silently dropped.

With ``SplitLimits.page_png`` (``ocr.output.page_images``) each page also comes out as a
PNG of exactly those pixels, encoded here where the pixmap already exists: a page that is
not otherwise rasterized is rendered for it, but its pixels still do not travel on.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageSequence

from documents.images import png_from_rgb
from documents.pymupdf_import import import_pymupdf
from documents.selection import select_pages
from documents.sniff import InputRejected

pymupdf = import_pymupdf()  # this module only renders: the layout model stays unbuilt (see there)
pymupdf.TOOLS.mupdf_display_errors(False)  # errors are reported per document instead


@dataclass
class RenderedPage:
    page_number: int  # 1-based
    width: int = 0
    height: int = 0
    scale: float = 1.0  # page pixels per PDF point
    pixels: bytes = b""  # RGB, row-major, width*height*3; empty when not rasterized
    pdf_bytes: bytes = b""
    has_text_layer: bool = False
    error: str | None = None
    png: bytes = b""  # the page image as PNG, with SplitLimits.page_png

    def image(self) -> np.ndarray:
        if not self.pixels:
            raise ValueError(f"page {self.page_number} was split without its pixels (SplitLimits.pixels is off)")
        return np.frombuffer(self.pixels, dtype=np.uint8).reshape(self.height, self.width, 3)


@dataclass
class SplitLimits:
    dpi: int = 150
    max_pixels: int = 12_000_000
    max_image_pixels: int = 200_000_000
    pages: str | None = None
    max_pages: int | None = None
    pixels: bool = True  # rasterize the page; off when every later stage reads the one-page PDF instead
    page_png: bool = False  # also encode the page as PNG (ocr.output.page_images)


def fit_scale(width_pt: float, height_pt: float, dpi: int, max_pixels: int) -> float:
    """Pixels per point at ``dpi``, reduced so the page stays under ``max_pixels``."""
    scale = dpi / 72.0
    area = width_pt * height_pt * scale * scale
    if area > max_pixels:
        scale *= math.sqrt(max_pixels / area)
    return scale


def split_pages(data: bytes, kind: str, limits: SplitLimits) -> tuple[int, list[int], Iterator[RenderedPage]]:
    """Open the document; return its page count, the selected page numbers and an iterator over them."""
    if kind == "pdf":
        doc = _open_pdf(data)
        selected = select_pages(doc.page_count, limits.pages, limits.max_pages)
        return doc.page_count, selected, _pdf_pages(doc, selected, limits)
    image = _open_image(data, limits)
    frames = getattr(image, "n_frames", 1)
    selected = select_pages(frames, limits.pages, limits.max_pages)
    return frames, selected, _image_pages(image, selected, limits)


# ----------------------------------------------------------------------------- PDF
def _open_pdf(data: bytes) -> pymupdf.Document:
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # noqa: BLE001 - MuPDF raises several types for broken files
        raise InputRejected("corrupt_pdf", f"cannot open PDF: {exc}") from None
    if doc.needs_pass:
        doc.close()
        raise InputRejected("encrypted_pdf", "encrypted PDF: a password is needed to open it")
    if doc.page_count == 0:
        doc.close()
        raise InputRejected("empty_pdf", "PDF has no pages")
    return doc


def _pdf_pages(doc: pymupdf.Document, selected: list[int], limits: SplitLimits) -> Iterator[RenderedPage]:
    try:
        for number in selected:
            try:
                yield _render_pdf_page(doc, number, limits)
            except Exception as exc:  # noqa: BLE001 - one bad page must not stop the others
                yield RenderedPage(page_number=number, error=f"cannot render page {number}: {type(exc).__name__}: {exc}")
    finally:
        doc.close()


def _render_pdf_page(doc: pymupdf.Document, number: int, limits: SplitLimits) -> RenderedPage:
    page = doc.load_page(number - 1)
    rect = page.rect  # rotated view, as rendered
    if rect.is_empty or rect.width <= 0 or rect.height <= 0:
        raise ValueError(f"page has an empty size {tuple(rect)}")
    scale = fit_scale(rect.width, rect.height, limits.dpi, limits.max_pixels)
    matrix = pymupdf.Matrix(scale, scale)
    png = b""
    if limits.pixels or limits.page_png:
        pix = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
        width, height = pix.width, pix.height
        pixels = bytes(pix.samples) if limits.pixels else b""
        if limits.page_png:
            png = png_from_rgb(np.frombuffer(pix.samples_mv, dtype=np.uint8).reshape(height, width, 3))
    else:  # the size get_pixmap would give (the transformed page rectangle, rounded outward)
        size = (rect * matrix).irect
        width, height, pixels = size.width, size.height, b""
    single = pymupdf.open()
    single.insert_pdf(doc, from_page=number - 1, to_page=number - 1)
    pdf_bytes = single.tobytes(garbage=1, deflate=True)
    single.close()
    return RenderedPage(
        page_number=number,
        width=width,
        height=height,
        scale=width / rect.width,
        pixels=pixels,
        pdf_bytes=pdf_bytes,
        has_text_layer=bool(page.get_text("text").strip()),
        png=png,
    )


# ----------------------------------------------------------------------------- images
def _open_image(data: bytes, limits: SplitLimits) -> Image.Image:
    previous = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputRejected(
            "image_too_large", f"image claims too many pixels (limit {limits.max_image_pixels:,}; a decompression bomb?)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        raise InputRejected("corrupt_image", f"cannot decode image: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    if width * height > limits.max_image_pixels:
        raise InputRejected(
            "image_too_large",
            f"image claims {width}x{height} = {width * height:,} pixels, over the limit of {limits.max_image_pixels:,}",
        )
    if width == 0 or height == 0:
        raise InputRejected("corrupt_image", f"image has an empty size {width}x{height}")
    return image


def _image_pages(image: Image.Image, selected: list[int], limits: SplitLimits) -> Iterator[RenderedPage]:
    wanted = set(selected)
    try:
        for index, frame in enumerate(ImageSequence.Iterator(image)):
            number = index + 1
            if number not in wanted:
                continue
            try:
                yield _image_page(frame, number, limits)
            except Exception as exc:  # noqa: BLE001 - truncated frames and the like
                yield RenderedPage(page_number=number, error=f"cannot decode image frame {number}: {type(exc).__name__}: {exc}")
    finally:
        image.close()


def _image_page(frame: Image.Image, number: int, limits: SplitLimits) -> RenderedPage:
    rgb = frame.convert("RGB")
    scale = min(1.0, math.sqrt(limits.max_pixels / (rgb.width * rgb.height)))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.LANCZOS)
    pixels = rgb.tobytes()
    # A one-page PDF whose points equal the image's pixels, so PDF engines see the same page.
    pdf = pymupdf.open()
    page = pdf.new_page(width=rgb.width, height=rgb.height)
    page.insert_image(page.rect, pixmap=pymupdf.Pixmap(pymupdf.csRGB, rgb.width, rgb.height, pixels, False))
    pdf_bytes = pdf.tobytes(deflate=True)
    pdf.close()
    return RenderedPage(
        page_number=number,
        width=rgb.width,
        height=rgb.height,
        scale=1.0,
        pixels=pixels if limits.pixels else b"",
        pdf_bytes=pdf_bytes,
        has_text_layer=False,
        png=png_from_rgb(np.asarray(rgb)) if limits.page_png else b"",
    )
