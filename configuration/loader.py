"""Load ``ray_config.yaml``, apply command-line overrides, validate, fingerprint.

Overrides are ``dotted.path=value`` strings whose value is parsed as YAML, so
``ocr.layout.pool.concurrency=[2,4]`` and ``cluster.num_cpus=8`` both work. Every field
in the schema can be set this way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from configuration.schema import AppConfig

#: Bumped when the report format changes in a way that invalidates old reports.
REPORT_SCHEMA_VERSION = "1.0"


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the key."""


def _format_validation_error(error: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {location}: {message} (got {item.get('input')!r})" if item["type"] != "extra_forbidden" else f"  {location}: {message}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its path and YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    path, raw = text.split("=", 1)
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``dotted.path=value`` override applied."""
    result = json.loads(json.dumps(data))  # deep copy of plain data
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return result


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_config(paths: Iterable[Path | str] = (), overrides: Iterable[str] = ()) -> AppConfig:
    """Merge config files (later ones win, section by section), apply overrides, validate.

    Everything is merged onto the defaults (``section_defaults``), so a file or override
    that sets one key of a section keeps that section's other defaults. Validating a
    partial mapping instead would take the rest from the section's *type*:
    ``ocr.picture.pool.num_cpus=1`` would turn the picture pool's default concurrency
    [1, 1] into ActorPoolConfig's [1, 2].
    """
    merged: dict[str, Any] = section_defaults(AppConfig())
    origins = []
    for path in paths:
        path = Path(path)
        _deep_merge(merged, read_yaml(path))
        origins.append(str(path))
    overrides = list(overrides)
    merged = apply_overrides(merged, overrides)
    if overrides:
        origins.append("overrides " + " ".join(overrides))
    try:
        return AppConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, ", ".join(origins) or "defaults")) from None


def section_defaults(model: BaseModel, dumped: dict[str, Any] | None = None) -> dict[str, Any]:
    """``model``'s values as plain data, without its free-form mappings.

    Mappings such as an engine's ``options`` or ``runtime_env`` are set as a whole by whoever
    sets them: the default layout engine's options must not be merged into another engine's.
    ``dumped``: ``model`` already dumped (the recursion dumps the whole config once).
    """
    dumped = model.model_dump(mode="json") if dumped is None else dumped
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out[name] = section_defaults(value, dumped[name])
        elif not isinstance(value, dict):
            out[name] = dumped[name]
    return out


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def fingerprint(config: AppConfig) -> str:
    """Hash of everything that changes a report's content (see ``OCRConfig.fingerprint_payload``)."""
    payload = {"schema": REPORT_SCHEMA_VERSION, "ocr": config.ocr.fingerprint_payload()}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def to_yaml(config: AppConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
