"""OCR quality metrics shared by evaluation and sweeps.

CER is corpus-level (total edits over total reference characters), not a mean of page
CERs, so a short page with one error does not weigh as much as a long page; this is the
number the OCR benchmark reports too. Normalisation (strip, collapse whitespace runs) is
optional because layout whitespace is not an OCR error for most uses, but a model trained
to reproduce exact line breaks should be able to be held to them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Sequence

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Strip and collapse every whitespace run to one space."""
    return _WHITESPACE.sub(" ", text).strip()


def _pairs(predictions: Sequence[str], references: Sequence[str], normalize: bool) -> list[tuple[str, str]]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if normalize:
        return [(normalize_text(p), normalize_text(r)) for p, r in zip(predictions, references)]
    return list(zip(predictions, references))


def character_error_rate(predictions: Sequence[str], references: Sequence[str], *, normalize: bool = False) -> float:
    """Total Levenshtein distance / total reference characters, over the whole corpus.

    Empty references contribute their prediction's length as edits; when every reference
    is empty the rate is 0.0 for an all-empty prediction set and 1.0 otherwise (there is
    no denominator, and "some wrong output" must not look perfect).
    """
    from rapidfuzz.distance import Levenshtein

    pairs = _pairs(predictions, references, normalize)
    edits = sum(Levenshtein.distance(p, r) for p, r in pairs)
    total = sum(len(r) for _, r in pairs)
    if total == 0:
        return 0.0 if edits == 0 else 1.0
    return edits / total


def exact_match(predictions: Sequence[str], references: Sequence[str], *, normalize: bool = False) -> float:
    """Share of predictions equal to their reference (0.0 for an empty corpus)."""
    pairs = _pairs(predictions, references, normalize)
    if not pairs:
        return 0.0
    return sum(p == r for p, r in pairs) / len(pairs)


@dataclass(frozen=True)
class OcrScores:
    """The OCR numbers reported together; ``char_accuracy`` is ``1 - cer`` clipped at 0."""

    cer: float
    char_accuracy: float
    exact_match: float
    count: int

    @classmethod
    def compute(cls, predictions: Sequence[str], references: Sequence[str], *, normalize: bool = False) -> OcrScores:
        cer = character_error_rate(predictions, references, normalize=normalize)
        return cls(
            cer=cer,
            char_accuracy=max(0.0, 1.0 - cer),
            exact_match=exact_match(predictions, references, normalize=normalize),
            count=len(references),
        )

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)
