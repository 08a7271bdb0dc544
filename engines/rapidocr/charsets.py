"""Character sets a CTC recognizer's output can be restricted to (RapidOCR option ``charset``).

PP-OCR's recognizers read Chinese and English: PP-OCRv6 tiny scores 6906 classes per
column (6174 of them CJK ideographs), PP-OCRv4 6625. On Latin-script documents nearly all
of that output layer is spent on characters that cannot occur, and each one can still
win a column where a glyph is ambiguous. ``latin`` keeps the classes a Latin-script
document uses (about 620 of PP-OCRv6 tiny's): Latin letters with their accents, digits,
punctuation, Greek letters and the mathematical, currency and typographic symbols; it
leaves out the East Asian scripts (CJK ideographs and radicals, kana, Hangul, Yi, CJK
punctuation) and the full-width and small forms used in East Asian text. Tesseract's
``eng`` model, which the OCR bench compares with, knows a similar set.

Pure Python; which model and decoder this applies to is ``engines.rapidocr.ctc_head``'s and the
engine's business.
"""

from __future__ import annotations

from typing import Literal, Sequence

CharsetName = Literal["all", "latin"]

#: Unicode blocks of East Asian scripts and forms, as inclusive code point ranges.
EAST_ASIAN_RANGES: tuple[tuple[int, int], ...] = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x9FFF),  # CJK radicals, Kangxi, CJK symbols and punctuation, kana, Bopomofo, enclosed CJK, ideographs
    (0xA000, 0xA4CF),  # Yi
    (0xAC00, 0xD7FF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFE30, 0xFE6F),  # CJK compatibility and small form variants
    (0xFF00, 0xFFEF),  # half-width and full-width forms
    (0x20000, 0x3FFFF),  # CJK ideograph extensions
)


def is_east_asian(character: str) -> bool:
    """Whether any code point of ``character`` lies in an East Asian script or form block."""
    return any(low <= ord(point) <= high for point in character for low, high in EAST_ASIAN_RANGES)


def in_charset(character: str, charset: CharsetName) -> bool:
    """Whether a recognizer class reading ``character`` stays under ``charset``."""
    if charset == "all":
        return True
    if charset == "latin":
        return not is_east_asian(character)
    raise ValueError(f"unknown charset {charset!r}")


def kept_classes(characters: Sequence[str], charset: CharsetName) -> list[int]:
    """Indices of the recognizer classes kept under ``charset``, in order; class 0 (CTC blank) always.

    ``characters`` is the decoder's class list, blank first (RapidOCR's ``CTCLabelDecode.character``).
    """
    return [0] + [index for index, character in enumerate(characters) if index and in_charset(character, charset)]
