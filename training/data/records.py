"""The one record type every data source yields and every job consumes.

OCR pairs (image → text) and multiple-choice items (image + question + choices → answer
index) share it, so the training, distillation, fine-tuning and evaluation jobs read any
source the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Record:
    """One example. ``text`` is the target transcription (or the gold answer's text)."""

    image: Any  # PIL.Image.Image, RGB
    text: str
    question: str | None = None
    choices: list[str] | None = None
    answer: int | None = None  # index into ``choices``
    meta: dict[str, Any] = field(default_factory=dict)  # source path, page, bbox... for tracing

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.choices)
