"""Write the config reference, ``docs/configuration.md`` (``python -m configuration.reference [--update]``).

Generated from the schema so it cannot drift: one table per section, then the engines'
options. An options model several places share is printed once and referred to
elsewhere: the generative engines' common options (dots and gemma), and RapidOCR's
options (its own engine, and the PyMuPDF engine's OCR of image-only pages). A test keeps
the file current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from configuration.schema import AppConfig
from engines import registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"

Row = tuple[str, str, str]


def _rows(model: type[BaseModel], prefix: str, instance: BaseModel | None = None,
          elsewhere: dict[type, str] | None = None, skip: set[str] | None = None) -> Iterator[Row]:
    """One row per leaf setting; nested sections show the defaults their parent gives them (not their type's).

    ``elsewhere``: nested models printed in their own table (one row pointing there);
    ``skip``: field names left out (printed with a shared base model).
    """
    if instance is None:
        try:
            instance = model()
        except ValidationError:  # a required field (the generative engines' model): each field's own default
            instance = model.model_construct()
    for name, field in model.model_fields.items():
        if skip and name in skip:
            continue
        key = f"{prefix}{name}"
        annotation = field.annotation
        if key.endswith(".options"):
            continue  # engine options: listed with their engines below
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if elsewhere and annotation in elsewhere:
                yield key, "", f"{field.description or ''} (its keys: {elsewhere[annotation]})".strip()
                continue
            yield from _rows(annotation, f"{key}.", getattr(instance, name), elsewhere)
            continue
        if field.is_required() and not hasattr(instance, name):
            yield key, "", f"**required**: {field.description or ''}"
            continue
        default: Any = getattr(instance, name)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        if isinstance(default, tuple):
            default = list(default)
        yield key, json.dumps(to_jsonable_python(default)), (field.description or "")


def _table(rows: Iterator[Row]) -> list[str]:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, text in rows:
        shown = f"`{default}`" if default else ""
        lines.append(f"| `{key}` | {shown} | {text.replace('|', chr(92) + '|')} |")
    return lines


def _shared_base(classes: list[type]) -> type | None:
    """The nearest options base class (below pydantic's) that every class in ``classes`` derives from, if any."""
    if len(classes) < 2:
        return None
    for base in classes[0].__mro__[1:]:
        if base is BaseModel or not (isinstance(base, type) and issubclass(base, BaseModel)):
            return None
        if all(issubclass(other, base) for other in classes[1:]):
            return base
    return None


def _same_default(model: type[BaseModel], base: type[BaseModel], name: str) -> bool:
    """Whether ``model`` keeps ``base``'s default for field ``name`` (an engine's own default is printed with it)."""
    mine, theirs = model.model_fields[name], base.model_fields[name]
    return (mine.default, mine.default_factory) == (theirs.default, theirs.default_factory)


def reference_markdown() -> str:
    """The generated part of ``docs/configuration.md``."""
    engines = {name: registry._load(spec.options) for name, spec in sorted(registry.ENGINES.items())}
    elsewhere = {options: f"engine `{name}` below" for name, options in engines.items()}
    lines: list[str] = []
    for section in ("cluster", "ocr", "train", "tune"):
        annotation = AppConfig.model_fields[section].annotation
        lines += [f"### `{section}`", "", *_table(_rows(annotation, f"{section}.", elsewhere=elsewhere)), ""]
    lines += ["### Engine options (`ocr.layout.options`, `ocr.picture.options`)", ""]
    base = _shared_base([engines["dots"], engines["gemma"]])
    shared: set[str] = set()
    if base is not None:
        shared = set(base.model_fields)
        users = [name for name, options in engines.items() if issubclass(options, base)]
        lines += [f"#### Common to the generative engines ({', '.join(f'`{n}`' for n in users)})", "",
                  *_table(_rows(base, "", elsewhere=elsewhere)), ""]
    for name, options in engines.items():
        spec = registry.ENGINES[name]
        own = {f for f in shared if _same_default(options, base, f)} if base is not None and issubclass(options, base) else set()
        lines += [f"#### Engine `{name}` ({spec.kind}): {spec.description}", ""]
        if own:
            lines += ["The common options above, with these defaults and additions:", ""]
        others = {k: v for k, v in elsewhere.items() if k is not options}
        rows = list(_rows(options, "", elsewhere=others, skip=own))
        lines += [*(_table(iter(rows)) if rows else ["Only the common options above."]), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def update(path: Path = DOC) -> None:
    """Rewrite the generated part between the document's markers."""
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    body = reference_markdown()  # before opening the file for writing: a failure must not empty it
    path.write_text(head + START + body + END + tail, encoding="utf-8")


if __name__ == "__main__":
    import sys

    if "--update" in sys.argv:
        update()
    else:
        print(reference_markdown(), end="")
