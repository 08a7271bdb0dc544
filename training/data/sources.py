"""Load any on-disk dataset as ``Record``s, so every job reads every source the same way.

A ``DatasetSpec`` names a path, its format (or ``auto``) and which columns hold the image,
text, question, choices and answer. The formats are the ones our data actually comes in:
``datasets.save_to_disk`` folders, parquet files or folders of ``{split}.parquet`` (what
``training.data.synthetic.write_splits`` and ``jobs.make_ocr_data`` write), and imagefolders
(images plus ``metadata.jsonl``/``metadata.csv``). Loading goes through ``datasets`` so the
HF ``Image`` feature, memory mapping and metadata parsing are not re-implemented here.

Errors name the path and the problem. A row whose image cannot be decoded (or whose
choices/answer do not make sense) is skipped with a warning naming its index: one bad row
in a large set must not stop a training run.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from training.data.records import Record

log = logging.getLogger(__name__)

Format = Literal["auto", "disk", "parquet", "imagefolder", "synthetic_dir"]

_DISK_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")
_METADATA_FILES = ("metadata.jsonl", "metadata.csv")


class DataSourceError(ValueError):
    """A dataset that cannot be used as given; the message names the path and the problem."""


class ColumnMap(BaseModel):
    """Which dataset column feeds which ``Record`` field (None: the field is not in the data).

    ``text=None`` makes a multiple-choice record's text the gold choice's text.
    """

    model_config = ConfigDict(extra="forbid")

    image: str = "image"
    text: str | None = "text"
    question: str | None = None
    choices: str | None = None
    answer: str | None = None


class DatasetSpec(BaseModel):
    """Where a dataset lives and how to read it; the one config block every job uses for data."""

    model_config = ConfigDict(extra="forbid")

    path: str
    format: Format = "auto"
    split: str | None = Field(None, description="split of a DatasetDict / imagefolder, or {split}.parquet in a folder")
    columns: ColumnMap = Field(default_factory=ColumnMap)
    limit: int | None = Field(None, ge=1, description="use at most this many rows (after shuffling)")
    shuffle_seed: int | None = Field(None, description="shuffle rows with this seed before the limit")


# ----------------------------------------------------------------------------- format detection
def detect_format(path: Path) -> Format:
    """The format of ``path`` from the files it holds; raises DataSourceError saying what was looked for."""
    if not path.exists():
        raise DataSourceError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() == ".parquet":
            return "parquet"
        raise DataSourceError(f"{path}: a file, but not a .parquet file (other formats are folders)")
    if any((path / marker).is_file() for marker in _DISK_MARKERS):
        return "disk"
    if _has_metadata(path):
        return "imagefolder"
    if (path / "synthetic_config.json").is_file():
        return "synthetic_dir"
    if any(path.glob("*.parquet")):
        return "parquet"
    raise DataSourceError(
        f"{path}: cannot tell the dataset format: no {' / '.join(_DISK_MARKERS)} (save_to_disk), "
        f"no {' / '.join(_METADATA_FILES)} (imagefolder) and no *.parquet files"
    )


def _has_metadata(folder: Path) -> bool:
    """Imagefolder metadata sits in the folder or in its split subfolders (train/, test/...)."""
    places = [folder, *(child for child in folder.iterdir() if child.is_dir())]
    return any((place / name).is_file() for place in places for name in _METADATA_FILES)


# ----------------------------------------------------------------------------- loading
def load_dataset_from_spec(spec: DatasetSpec):
    """The spec's rows as a ``datasets.Dataset``: format resolved, split picked, columns checked,
    shuffled and limited."""
    return _load(spec)[0]


def _load(spec: DatasetSpec) -> tuple[Any, list[int] | range]:
    """The dataset and, for each of its rows, the row's index in the unshuffled source, so
    warnings and ``meta["row"]`` point at the row a person would look up."""
    path = Path(spec.path).expanduser()
    fmt = detect_format(path) if spec.format == "auto" else spec.format
    if not path.exists():
        raise DataSourceError(f"{path}: no such file or directory")
    if fmt == "disk":
        dataset = _load_disk(path, spec.split)
    elif fmt == "imagefolder":
        dataset = _load_imagefolder(path, spec.split)
    else:
        dataset = _load_parquet(path, spec.split)
    where = f"{path}" + (f" (split {spec.split!r})" if spec.split else "")
    check_columns(dataset.column_names, spec.columns, where)
    if len(dataset) == 0:
        raise DataSourceError(f"{where}: the dataset is empty (0 rows)")
    rows: list[int] | range = range(len(dataset))
    if spec.shuffle_seed is not None:
        import numpy as np

        rows = np.random.default_rng(spec.shuffle_seed).permutation(len(dataset)).tolist()
    if spec.limit is not None:
        rows = rows[: spec.limit]
    if rows != range(len(dataset)):
        dataset = dataset.select(rows, keep_in_memory=True)  # an index map; the source is not copied
    return dataset, rows


def check_columns(available: list[str], columns: ColumnMap, where: str) -> None:
    """Refuse mapped columns the data does not have, listing the ones it does."""
    if columns.answer and not columns.choices:
        raise DataSourceError(f"{where}: columns.answer is set but columns.choices is not (answers index into choices)")
    if columns.text is None and not (columns.choices and columns.answer):
        raise DataSourceError(f"{where}: columns.text is None, so columns.choices and columns.answer must give the text")
    for field, name in columns.model_dump().items():
        if name is not None and name not in available:
            hint = " (set columns.text to None to use the gold choice's text)" if field == "text" and columns.choices else ""
            raise DataSourceError(
                f"{where}: unknown column {name!r} for {field}; available columns: {', '.join(available)}{hint}"
            )


def _load_disk(path: Path, split: str | None):
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises several types for broken folders
        raise DataSourceError(f"{path}: cannot load a save_to_disk dataset: {exc}") from None
    return _pick_split(loaded, split, path)


def _load_imagefolder(path: Path, split: str | None):
    import datasets

    try:
        loaded = datasets.load_dataset("imagefolder", data_dir=str(path))
    except Exception as exc:  # noqa: BLE001
        raise DataSourceError(f"{path}: cannot load as an imagefolder: {exc}") from None
    return _pick_split(loaded, split, path)


def _pick_split(loaded: Any, split: str | None, path: Path):
    """A Dataset from a DatasetDict: the named split, or the only one there is."""
    import datasets

    if isinstance(loaded, datasets.Dataset):
        if split is not None:
            log.warning("%s holds a single dataset, not splits; ignoring split=%r", path, split)
        return loaded
    names = list(loaded.keys())
    if split is None:
        if len(names) == 1:
            return loaded[names[0]]
        raise DataSourceError(f"{path}: has splits {', '.join(names)}; set split to one of them")
    if split not in loaded:
        raise DataSourceError(f"{path}: no split {split!r}; available splits: {', '.join(names) or 'none'}")
    return loaded[split]


def parquet_files(path: Path, split: str | None) -> list[Path]:
    """The parquet files of a split: ``{split}.parquet`` or shards ``{split}-*.parquet`` in a folder."""
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.parquet"))
    if not files:
        raise DataSourceError(f"{path}: no .parquet files in this folder")
    splits = sorted({f.stem.split("-")[0] for f in files})
    if split is None:
        if len(splits) == 1:
            return files
        raise DataSourceError(f"{path}: has parquet splits {', '.join(splits)}; set split to one of them")
    chosen = [f for f in files if f.stem == split or f.stem.startswith(f"{split}-")]
    if not chosen:
        raise DataSourceError(f"{path}: no split {split!r} ({split}.parquet); available splits: {', '.join(splits)}")
    return chosen


def _load_parquet(path: Path, split: str | None):
    import datasets
    import pyarrow.parquet as pq

    files = parquet_files(path, split)
    try:
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        if rows == 0:  # from_parquet's own message for this is obscure
            raise DataSourceError(f"{path}: the dataset is empty (0 rows in {', '.join(f.name for f in files)})")
        return datasets.Dataset.from_parquet([str(f) for f in files])
    except DataSourceError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataSourceError(f"{path}: cannot read parquet {', '.join(f.name for f in files)}: {exc}") from None


# ----------------------------------------------------------------------------- records
def iter_records(spec: DatasetSpec) -> Iterator[Record]:
    """Yield the spec's rows as Records; rows that cannot be used are skipped with a warning."""
    import datasets

    dataset, source_rows = _load(spec)
    columns = spec.columns
    wanted = [name for name in columns.model_dump().values() if name is not None]
    dataset = dataset.select_columns(list(dict.fromkeys(wanted)))
    if isinstance(dataset.features[columns.image], datasets.Image):
        # Decode ourselves, per row, so one corrupt image skips one row instead of raising.
        dataset = dataset.cast_column(columns.image, datasets.Image(decode=False))
    base = Path(spec.path).expanduser()
    base_dir = base if base.is_dir() else base.parent
    skipped = 0
    for index, row in zip(source_rows, dataset):
        try:
            yield row_to_record(row, columns, base_dir, meta={"source": str(base), "split": spec.split, "row": index})
        except RowError as exc:
            skipped += 1
            log.warning("%s: skipping row %d: %s", base, index, exc)
    if skipped:
        log.warning("%s: skipped %d of %d rows", base, skipped, len(dataset))


class RowError(ValueError):
    """One row cannot become a Record (bad image, choices or answer)."""


def row_to_record(row: dict[str, Any], columns: ColumnMap, base_dir: Path, meta: dict[str, Any]) -> Record:
    """Map one dataset row to a Record; raises RowError saying what is wrong with it."""
    image = decode_image(row[columns.image], base_dir)
    question = _optional_str(row[columns.question]) if columns.question else None
    choices = parse_choices(row[columns.choices]) if columns.choices else None
    answer = None
    if columns.answer:
        answer = answer_index(row[columns.answer], choices or [])
    if columns.text is not None:
        text = row[columns.text]
        if text is None:
            raise RowError(f"column {columns.text!r} is empty")
        text = str(text)
    else:
        text = choices[answer] if choices and answer is not None else ""
    return Record(image=image, text=text, question=question, choices=choices, answer=answer, meta=meta)


def decode_image(value: Any, base_dir: Path):
    """An RGB PIL image from what a dataset stores: HF Image dicts, bytes, a path or a PIL image."""
    from PIL import Image

    try:
        if isinstance(value, Image.Image):
            image = value
        elif isinstance(value, dict) and value.get("bytes"):
            image = Image.open(io.BytesIO(value["bytes"]))
        elif isinstance(value, dict) and value.get("path"):
            image = Image.open(_resolve(value["path"], base_dir))
        elif isinstance(value, (bytes, bytearray)):
            image = Image.open(io.BytesIO(value))
        elif isinstance(value, str) and value:
            image = Image.open(_resolve(value, base_dir))
        else:
            raise RowError(f"no image (got {type(value).__name__})")
        image.load()  # truncated files fail here rather than later in a collate function
        return image.convert("RGB")
    except RowError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken images
        raise RowError(f"unreadable image: {type(exc).__name__}: {exc}") from None


def _resolve(path: str, base_dir: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else base_dir / candidate


def parse_choices(value: Any) -> list[str]:
    """Choices as a list of strings, from a list column or a JSON-encoded list."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError(f"choices is a string but not JSON: {value[:80]!r}") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise RowError(f"choices must be a non-empty list, got {value!r}"[:200])
    return [str(choice) for choice in value]


def answer_index(value: Any, choices: list[str]) -> int:
    """The gold answer as an index into ``choices``: an index already, or the answer's text."""
    if isinstance(value, bool) or value is None:
        raise RowError(f"answer must be an index or a choice's text, got {value!r}")
    if isinstance(value, str):
        stripped = value.strip()
        for i, choice in enumerate(choices):
            if choice.strip() == stripped:
                return i
        lowered = [choice.strip().casefold() for choice in choices]
        if stripped.casefold() in lowered:
            return lowered.index(stripped.casefold())
        if not stripped.lstrip("-").isdigit():
            raise RowError(f"answer {value!r} is not one of the choices {choices}")
        value = int(stripped)
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise RowError(f"answer must be an index or a choice's text, got {value!r}") from None
    if not 0 <= index < len(choices):
        raise RowError(f"answer index {index} is out of range for {len(choices)} choices")
    return index


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
