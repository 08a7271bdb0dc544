"""Tell a file's real type from its first bytes, and refuse misnamed files clearly."""

from __future__ import annotations

from pathlib import PurePath

_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF8", "gif"),
    (b"BM", "bmp"),
    (b"PK\x03\x04", "zip"),
]
_EXTENSION_TYPES = {".pdf": "pdf", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff"}
SUPPORTED = frozenset({"pdf", "png", "jpeg", "tiff"})


class InputRejected(ValueError):
    """A file that cannot be processed; the message says why (it lands in an error record)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def content_type(head: bytes) -> str | None:
    """``pdf``, ``png``, ``jpeg``, ``tiff`` (or another known type) from the first bytes; None if unknown."""
    # PDF readers accept the header anywhere in the first 1024 bytes.
    if b"%PDF-" in head[:1024]:
        return "pdf"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


def check_type(name: str, head: bytes, size: int) -> str:
    """Return the file's type, or raise InputRejected for empty, unknown or misnamed files."""
    if size == 0:
        raise InputRejected("empty_file", "empty file (0 bytes)")
    actual = content_type(head)
    expected = _EXTENSION_TYPES.get(PurePath(name).suffix.lower())
    if actual is None:
        preview = head[:8].hex(" ")
        raise InputRejected("unknown_format", f"not a PDF or a PNG/JPEG/TIFF image (first bytes: {preview})")
    if actual not in SUPPORTED:
        raise InputRejected("unsupported_format", f"content is {actual.upper()}, which is not supported")
    if expected is not None and expected != actual:
        raise InputRejected(
            "misnamed_file",
            f"misnamed file: the extension says {expected.upper()} but the content is {actual.upper()}",
        )
    return actual
