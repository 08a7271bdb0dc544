"""Scores of OCR or extracted text against a reference text: CER and word recall.

Both texts are normalised the same way first, so that layout differences are not counted
as errors: NFKC (the reference's "ﬁ" ligature becomes "fi"), a hyphen that ends a line
before a lower-case letter joined ("ex-\\nperiment" becomes "experiment", in the
reference as in the output), and every whitespace run one space. CER is order-sensitive
(a page read in the wrong column order scores badly even with every word right); word
recall is not (a bag of words), so the two together tell reading from ordering.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from typing import Iterable, Sequence

_LINE_HYPHEN = re.compile(r"(\w)-\s*\n\s*(?=[a-z])")
_SOFT_HYPHEN = re.compile("\u00ad\\s*")  # shown only where a line breaks: "op\u00ad\ntions" is one word
_TAG = re.compile(r"<[^>]+>")
_PUNCTUATION = "\"'.,;:!?()[]{}“”‘’"


def normalize(text: str) -> str:
    """NFKC, line-end hyphens joined, soft hyphens dropped, every whitespace run one space."""
    text = unicodedata.normalize("NFKC", text)
    text = _LINE_HYPHEN.sub(r"\1", _SOFT_HYPHEN.sub("", text))
    return re.sub(r"\s+", " ", text).strip()


def html_text(markup: str) -> str:
    """The words of an HTML fragment (a table element's text), cells and rows apart."""
    return html.unescape(_TAG.sub(" ", markup))


def elements_text(elements: Iterable[dict | object]) -> str:
    """A page's elements (report dicts or ``Element``s) as one text in their order, tables as their words."""
    parts = []
    for element in elements:
        text = element["text"] if isinstance(element, dict) else element.text
        parts.append(html_text(text) if "<t" in text else text)
    return "\n".join(part for part in parts if part)


def cer(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, list[float]]:
    """Corpus CER (total edits / total reference characters) and each page's CER."""
    from rapidfuzz.distance import Levenshtein

    edits = [Levenshtein.distance(normalize(h), normalize(r)) for h, r in zip(hypotheses, references)]
    lengths = [max(1, len(normalize(r))) for r in references]
    return sum(edits) / sum(lengths), [e / n for e, n in zip(edits, lengths)]


def unordered_cer(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """CER of the texts' words sorted: what is read wrong, dropped or added, whatever the order it is read in."""
    from rapidfuzz.distance import Levenshtein

    def bag(text: str) -> str:
        return " ".join(sorted(normalize(text).split(" ")))

    edits = sum(Levenshtein.distance(bag(h), bag(r)) for h, r in zip(hypotheses, references))
    return edits / max(1, sum(len(normalize(r)) for r in references))


def words(text: str) -> Counter[str]:
    """The bag of words of a normalised text, punctuation at word ends stripped."""
    tokens = (token.strip(_PUNCTUATION) for token in normalize(text).split(" "))
    return Counter(token for token in tokens if token)


def word_recall(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of the references' words (with multiplicity, page by page) found in the hypotheses."""
    found = total = 0
    for hypothesis, reference in zip(hypotheses, references):
        expected, got = words(reference), words(hypothesis)
        total += sum(expected.values())
        found += sum(min(count, got[word]) for word, count in expected.items())
    return found / max(1, total)
