"""A trained LoRA adapter as one zip a user can hand on: the adapter, its settings, scores and a README that loads it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.lora import ADAPTER_DIR_IN_ZIP, MANIFEST_NAME, PROCESSOR_FILES, LoraSettings

if TYPE_CHECKING:  # pragma: no cover
    from vlm.families import ModelFamily


def export_adapter_zip(
    adapter_dir: str | Path,
    zip_path: str | Path,
    *,
    base_model: str,
    settings: LoraSettings,
    family: ModelFamily,
    extra: dict[str, Any] | None = None,
) -> Path:
    """One shareable file: ``adapter/`` (the adapter folder), ``docvlm_lora.json`` and a ``README.md``.

    ``family``: the base model's (``vlm.families``), which says how to load it in the README.

    The adapter sits in a subfolder because peft writes its own ``README.md`` there.
    Every path in the archive is relative.
    """
    adapter_dir, zip_path = Path(adapter_dir), Path(zip_path)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ValueError(f"{adapter_dir} is not an adapter folder (adapter_config.json missing)")
    manifest = {
        "format_version": 1,
        "base_model": base_model,
        "model_family": family.name,
        "adapter_dir": ADAPTER_DIR_IN_ZIP,
        "settings": settings.model_dump(mode="json"),
        "resolved": {"r": settings.rank, "alpha": settings.lora_alpha, "dropout": settings.lora_dropout, "quantization": settings.quantization},
        "versions": {name: _version(name) for name in ("peft", "transformers", "torch")},
        "extra": extra or {},
    }
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_name(zip_path.name + ".partial")
    skip = {zip_path.resolve(), partial.resolve()}
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(adapter_dir.rglob("*")):
            if path.is_file() and path.resolve() not in skip:
                archive.write(path, _safe_arcname(ADAPTER_DIR_IN_ZIP, path.relative_to(adapter_dir).as_posix()))
        archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2, default=_jsonable) + "\n")
        processor_saved = any((adapter_dir / name).is_file() for name in PROCESSOR_FILES)
        archive.writestr("README.md", adapter_readme(base_model, settings, family, processor_in_adapter=processor_saved))
    partial.replace(zip_path)
    return zip_path


def adapter_readme(base_model: str, settings: LoraSettings, family: ModelFamily, *, processor_in_adapter: bool = True) -> str:
    """Short model card: how to load base + adapter in Python (transformers + peft, or docvlm's loader where the
    family's published code needs adapting) and in a docvlm config."""
    auto_class = family.auto_class
    remote = ", trust_remote_code=True" if family.remote_code else ""
    section, engine = ("picture", "gemma") if "picture" in family.roles else ("layout", "dots")
    engine_extra = "\n      trust_remote_code: true" if family.remote_code else ""
    targets = "explicit target_modules" if settings.target_modules else f"targets: {settings.targets}"
    contents = "the PEFT adapter and the processor" if processor_in_adapter else "the PEFT adapter"
    if family.adapter:  # the published code needs adapting under current transformers: docvlm's loader does it
        loading = f"""## Loading it in Python

{family.name}'s published code does not run unmodified under current transformers; docvlm's loader
adapts it ({family.adapter}) and puts the adapter on top:

```python
from vlm.loading import ModelSource, load_model_and_processor

model, processor = load_model_and_processor(
    ModelSource(model="{base_model}", adapter="{ADAPTER_DIR_IN_ZIP}"{remote}))
```
"""
    else:
        processor_from = ADAPTER_DIR_IN_ZIP if processor_in_adapter else base_model
        loading = f"""## transformers + peft

```python
from peft import PeftModel
from transformers import AutoProcessor, {auto_class}

base = {auto_class}.from_pretrained("{base_model}", dtype="auto", device_map="auto"{remote})
model = PeftModel.from_pretrained(base, "{ADAPTER_DIR_IN_ZIP}")
model = model.merge_and_unload()  # optional: plain model, faster generation
processor = AutoProcessor.from_pretrained("{processor_from}"{remote})
```
"""
    return f"""# LoRA adapter for `{base_model}`

Trained with docvlm: preset `{settings.preset}`, r={settings.rank}, alpha={settings.lora_alpha:g}, \
dropout={settings.lora_dropout:g}, {targets}.
`{ADAPTER_DIR_IN_ZIP}/` holds {contents}; `{MANIFEST_NAME}` the settings and metrics.

{loading}
## docvlm

Unzip, then point the engine at the base model and the adapter folder:

```yaml
ocr:
  {section}:
    engine: {engine}
    options:
      model: {base_model}
      adapter: /path/to/unzipped/{ADAPTER_DIR_IN_ZIP}
      merge_adapter: true{engine_extra}
```
"""


def _safe_arcname(*parts: str) -> str:
    name = "/".join(parts)
    if name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"refusing to write {name!r} into an archive: paths must be relative")
    return name


def _jsonable(value: Any) -> Any:
    """numpy / torch scalars in metrics become numbers; anything else its string."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
