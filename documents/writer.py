"""Atomic, confined writing of reports, and the resume check.

Each file is written to a temporary name in the same directory and renamed over the
target, so a killed run never leaves a half-written report. Paths are resolved and
checked to stay inside the output directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from documents.report import SCHEMA_VERSION


class UnsafePath(ValueError):
    pass


def confined(out_dir: Path, relative: str) -> Path:
    """``out_dir / relative``, refusing anything that resolves outside ``out_dir``."""
    root = out_dir.resolve()
    target = (root / relative).resolve()
    if root != target and root not in target.parents:
        raise UnsafePath(f"output name {relative!r} would escape {root}")
    return target


def atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, atomically; values JSON does not know (paths, numpy scalars) as their ``str``."""
    atomic_write(path, json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def report_path(out_dir: Path, name: str) -> Path:
    return confined(out_dir, f"{name}.json")


def existing_report_matches(path: Path, sha256: str, fingerprint: str, retry_failed: bool = False) -> bool:
    """True if ``path`` holds a finished report of the same file and config (so resume skips it)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(report, dict):
        return False
    same = (
        report.get("schema_version") == SCHEMA_VERSION
        and report.get("sha256") == sha256
        and report.get("config_fingerprint") == fingerprint
    )
    if same and retry_failed and (report.get("error") or report.get("pages_failed")):
        return False
    return same

