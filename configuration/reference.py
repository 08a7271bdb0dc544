"""Print the config reference as a Markdown table (``python -m configuration.reference [--update-readme]``).

The README's configuration section is this output; a test keeps the two in step.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from configuration.schema import AppConfig
from engines import registry


def _rows(model: type[BaseModel], prefix: str, instance: BaseModel | None = None) -> Iterator[tuple[str, str, str]]:
    """One row per leaf setting; nested sections show the defaults their parent gives them (not their type's)."""
    instance = instance if instance is not None else model()
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if key.endswith(".options") or key == "train.lora":
            continue  # engine options and LoRA settings: listed with their own models below
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation, f"{key}.", getattr(instance, name))
            continue
        default: Any = getattr(instance, name)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        if isinstance(default, tuple):
            default = list(default)
        yield key, json.dumps(to_jsonable_python(default)), (field.description or "").replace("|", "\\|")


def reference_markdown() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for section in ("cluster", "ocr", "train", "tune"):
        annotation = AppConfig.model_fields[section].annotation
        lines += [f"| `{key}` | `{default}` | {text} |" for key, default, text in _rows(annotation, f"{section}.")]
    from training.lora import LoraSettings

    lines += [f"| `{key}` | `{default}` | {text} |" for key, default, text in _rows(LoraSettings, "train.lora.")]
    for name, spec in sorted(registry.ENGINES.items()):
        lines.append(f"| **engine `{name}`** | | {spec.description} |")
        options = registry._load(spec.options)
        lines += [f"| `ocr.{spec.kind}.options.{key}` | `{default}` | {text} |" for key, default, text in _rows(options, "")]
    return "\n".join(lines) + "\n"


def update_readme(path: str = "README.md") -> None:
    """Rewrite the table between the README's config-reference markers."""
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    text = open(path, encoding="utf-8").read()
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    table = reference_markdown()  # before opening the file for writing: a failure must not empty the README
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(head + start + table + end + tail)


if __name__ == "__main__":
    import sys

    if "--update-readme" in sys.argv:
        update_readme()
    else:
        print(reference_markdown(), end="")
