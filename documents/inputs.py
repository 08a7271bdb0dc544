"""Expand the command line's inputs (files, directories, globs) into named documents.

Each document gets a stable ``doc_id`` and an output name derived from its input name.
Names are sanitized component by component, so no input can make a report escape
``--out``; names that clash get a short hash of the absolute path, which is stable
across runs (resume depends on it) whatever the order of the inputs.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_COMPONENT = 120
#: Output names the job writes itself; a document with such a name gets a hash suffix.
RESERVED_NAMES = frozenset({"summary", "ray_data_stats", "effective_config"})


@dataclass(frozen=True)
class InputDocument:
    doc_id: str  # 16 hex chars of sha1(absolute path)
    path: str  # absolute path
    name: str  # relative output name, e.g. "sub/report.pdf" (no .json yet)


@dataclass(frozen=True)
class InputProblem:
    input: str
    message: str


def _safe_component(part: str) -> str:
    cleaned = _UNSAFE.sub("_", part).strip("._ ") or "_"
    if len(cleaned) > _MAX_COMPONENT:
        digest = hashlib.sha1(part.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[: _MAX_COMPONENT - 9]}-{digest}"
    return cleaned


def safe_relative_name(name: str) -> str:
    """Turn any input-derived name into a relative POSIX path with only safe components.

    ``..``, absolute roots, drive letters, control characters and hidden-file dots are removed,
    so ``out_dir / safe_relative_name(x)`` is always inside ``out_dir``.
    """
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".", "..")]
    safe = [_safe_component(p) for p in parts] or ["_"]
    return str(PurePosixPath(*safe))


def doc_id_for(path: str) -> str:
    return hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]


def _matches(path: Path, extensions: set[str]) -> bool:
    return path.suffix.lower() in extensions


def discover(inputs: list[str], extensions: list[str]) -> tuple[list[InputDocument], list[InputProblem]]:
    """Expand inputs; returns documents (deduplicated, sorted by output name) and problems found."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    found: dict[str, str] = {}  # absolute path -> relative display name
    problems: list[InputProblem] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _matches(p, exts))
            if not files:
                problems.append(InputProblem(raw, f"directory has no files with extensions {sorted(exts)}"))
            for file in files:
                found.setdefault(str(file.resolve()), file.relative_to(path).as_posix())
        elif path.is_file():
            # An explicitly named file is taken whatever its extension: the content decides.
            found.setdefault(str(path.resolve()), path.name)
        elif glob.has_magic(raw):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(raw), recursive=True))
            files = [m for m in matches if m.is_file() and _matches(m, exts)]
            if not files:
                problems.append(InputProblem(raw, "glob matched no supported files"))
            for file in files:
                found.setdefault(str(file.resolve()), file.name)
        else:
            problems.append(InputProblem(raw, "no such file or directory"))
    return _name_documents(found), problems


def _name_documents(found: dict[str, str]) -> list[InputDocument]:
    by_name: dict[str, list[str]] = {}
    for abs_path, display in found.items():
        by_name.setdefault(safe_relative_name(display).lower(), []).append(abs_path)
    documents = []
    for abs_path, display in found.items():
        name = safe_relative_name(display)
        if len(by_name[name.lower()]) > 1 or name.lower() in RESERVED_NAMES:
            name = f"{name}.{doc_id_for(abs_path)[:8]}"
        documents.append(InputDocument(doc_id=doc_id_for(abs_path), path=abs_path, name=name))
    return sorted(documents, key=lambda d: d.name)


def sha256_of_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
