"""A page's large images re-stored as JPEG before the layout analysis reads the page.

pymupdf-layout and pymupdf4llm extract a page's text with images kept
(``TEXT_PRESERVE_IMAGES``) about five times per page, and each extraction hands every
image over as an encoded file: a JPEG stream is handed over as it is, anything else
(Flate, LZW, CCITT, JBIG2: how most scanners and ``img2pdf``-style tools store a scan)
is decoded and encoded as PNG again each time. On a 150 dpi scanned page that is 75 ms
per extraction, 15 % of the layout engine's time on the page. Nobody downstream
reads those bytes: the layout model looks at a 72 dpi rendering of the page, and picture
crops are cut from the job's own pixels or the row's untouched PDF. So the engine's
throwaway copy of the page gets its images as JPEG once (a few milliseconds each);
what the model sees moves by JPEG's rounding at quality 95, far below the 72 dpi
rendering's own. Measured in docs/benchmarks.md (real-looking corpus).
"""

from __future__ import annotations

import numpy as np

#: Images smaller than this many pixels stay as they are (icons, rules: cheap to encode anyway).
MIN_PIXELS = 250_000
JPEG_QUALITY = 95


def store_images_as_jpeg(page, min_pixels: int = MIN_PIXELS) -> int:
    """Re-store ``page``'s large non-JPEG images (without a soft mask) as JPEG streams; how many were."""
    import cv2
    import pymupdf

    doc = page.parent
    replaced = 0
    for xref, smask, width, height, *_rest, image_filter, _referencer in page.get_images(full=True):
        if smask or width * height < min_pixels or image_filter in ("DCTDecode", "JPXDecode"):
            continue
        pix = pymupdf.Pixmap(doc, xref)
        if pix.alpha or pix.colorspace is None:  # stencil masks and images with alpha stay as they are
            continue
        if pix.colorspace.n not in (1, 3):  # CMYK, separations: JPEG as RGB
            pix = pymupdf.Pixmap(pymupdf.csRGB, pix)
        pixels = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, pix.n)
        if pix.n == 3:
            pixels = pixels[:, :, ::-1]  # OpenCV writes BGR
        encoded, stream = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if encoded:
            page.replace_image(xref, stream=stream.tobytes())
            replaced += 1
    return replaced
