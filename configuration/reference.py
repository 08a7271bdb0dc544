"""Print the config reference as a Markdown table (``python -m configuration.reference``).

The README's configuration section is this output; a test keeps the two in step.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from pydantic import BaseModel

from configuration.schema import AppConfig


def _rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str]]:
    instance = model()
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation, f"{key}.")
            continue
        default: Any = getattr(instance, name)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        if isinstance(default, tuple):
            default = list(default)
        yield key, json.dumps(default), (field.description or "").replace("|", "\\|")


def reference_markdown() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for section in ("cluster", "ocr"):
        annotation = AppConfig.model_fields[section].annotation
        lines += [f"| `{key}` | `{default}` | {text} |" for key, default, text in _rows(annotation, f"{section}.")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
