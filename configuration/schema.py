"""Typed sections of ``ray_config.yaml``.

Every model forbids unknown keys, so a typo fails loudly with the key's dotted path.
Sections ``train`` and ``tune`` are defined by the jobs that own them (``training.settings``, ``tune.settings``).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engines import registry


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- cluster
class ClusterConfig(Strict):
    address: str = Field(
        "auto",
        description=(
            "auto: join RAY_ADDRESS if set (an http:// one is a job server: submit, as below), else start a local Ray; "
            "local: always start a local Ray; ray://host:10001: Ray Client; "
            "http://host:8265: submit this command once as a Ray job to that cluster's job server. "
            "A process running as a Ray job always joins its own cluster"
        ),
    )
    namespace: str = Field("docvlm", description="Ray namespace for the job's actors")
    runtime_env: dict[str, Any] = Field(default_factory=dict, description="Ray runtime_env (pip, env_vars, working_dir...)")
    node_ip_address: str = Field("127.0.0.1", description="IP a local Ray binds to")
    dashboard_host: str = Field("127.0.0.1", description="host the dashboard of a local Ray binds to")
    include_dashboard: bool = Field(False, description="start the dashboard with a local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray (default: all)")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of a local Ray (default: detected)")
    object_store_memory: int | None = Field(None, ge=78_643_200, description="bytes of object store for a local Ray")
    worker_niceness: int | None = Field(
        0,
        ge=0,
        le=19,
        description=(
            "nice value of a local Ray's worker processes (null: Ray's default 15, under which the driver and Ray's "
            "own processes take the cores from the actors on a small machine)"
        ),
    )
    idle_workers_kept: int | None = Field(
        8,
        ge=0,
        description=(
            "idle worker processes a local Ray keeps for the CPU-stage tasks (Ray's num_workers_soft_limit; null: "
            "Ray's default, the unreserved CPUs, which is 0 once the actor pools reserve them, so every task then "
            "starts a fresh Python worker)"
        ),
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value in ("auto", "local") or re.match(r"^(ray|http|https)://[^/\s]+", value) or re.match(r"^[\w.-]+:\d+$", value):
            return value
        raise ValueError("must be auto, local, ray://host:port, http(s)://host:port or host:port")


# --------------------------------------------------------------------------- ocr
class ActorPoolConfig(Strict):
    """Resources of one actor pool. Not part of the config fingerprint: they change speed, not results."""

    concurrency: tuple[int, int | None] = Field(
        (1, None), description="min and max actors (autoscaling between them); max null: as many as the cluster fits"
    )
    batch_size: int = Field(
        2, ge=1, description="pages per batch handed to an actor (GPU engines want more; rows wait until a batch fills)"
    )
    num_cpus: float = Field(
        0.75, gt=0, description="CPUs reserved per actor (a CPU engine runs that many inference threads, rounded down, at"
        " least 1)"
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor; fractions share a GPU between small models")

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: Any) -> Any:
        if isinstance(value, int):
            return (value, value)
        return value

    @model_validator(mode="after")
    def _min_le_max(self) -> ActorPoolConfig:
        low, high = self.concurrency
        if low < 1 or (high is not None and high < low):
            raise ValueError(f"concurrency must be 1 <= min <= max (or max null), got {list(self.concurrency)}")
        return self


class EngineConfig(Strict):
    engine: str
    options: dict[str, Any] = Field(default_factory=dict, description="engine-specific settings (validated by the engine)")
    pool: ActorPoolConfig = Field(default_factory=ActorPoolConfig)


class LayoutConfig(EngineConfig):
    engine: str = Field("pymupdf", description=f"layout engine: {' | '.join(registry.engine_names('layout'))}")

    @model_validator(mode="after")
    def _options(self) -> LayoutConfig:
        object.__setattr__(self, "options", registry.validate_options(self.engine, "layout", self.options))
        return self


class CropConfig(Strict):
    padding_px: int = Field(8, ge=0, description="pixels added around each picture region before cropping")
    upscale: float = Field(
        2.0, ge=1.0, le=8.0,
        description="crops are enlarged by this factor before picture OCR (rendered at that resolution from the page's PDF"
        " where the page was not rasterized)",
    )
    min_size_px: int = Field(32, ge=1, description="regions narrower or shorter than this (page pixels) are skipped")
    max_crop_pixels: int = Field(16_000_000, ge=1, description="upscaling stops at this many pixels per crop")


class PictureConfig(EngineConfig):
    engine: str = Field("rapidocr", description=f"picture OCR engine: {' | '.join(registry.engine_names('picture'))}")
    enabled: bool = Field(True, description="run picture-region OCR")
    crop: CropConfig = Field(default_factory=CropConfig)
    # Picture OCR runs on a few crops per page: one light actor by default, so on a small
    # machine it does not take a core away from layout (docs/operations.md#cpu-nodes).
    pool: ActorPoolConfig = Field(default_factory=lambda: ActorPoolConfig(concurrency=(1, 1), batch_size=2, num_cpus=0.25))

    @model_validator(mode="after")
    def _options(self) -> PictureConfig:
        object.__setattr__(self, "options", registry.validate_options(self.engine, "picture", self.options))
        return self


class InputConfig(Strict):
    pages: str | None = Field(None, description="page selection applied to every document, e.g. '1-3,7' (1-based)")
    max_pages: int | None = Field(None, ge=1, description="at most this many pages per document (after selection)")
    max_file_bytes: int = Field(2 * 1024**3, ge=1, description="larger files get an error record instead of being read")
    max_image_pixels: int = Field(200_000_000, ge=1, description="images claiming more pixels are rejected (decompression bombs)")
    extensions: list[str] = Field(
        default_factory=lambda: [".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"],
        description="file extensions picked up when a directory or glob is given",
    )

    @field_validator("pages")
    @classmethod
    def _pages(cls, value: str | None) -> str | None:
        if value is not None:
            from documents.selection import parse_page_ranges

            parse_page_ranges(value)  # raises ValueError naming the problem
        return value


class RenderConfig(Strict):
    dpi: int = Field(150, ge=36, le=1200, description="rasterization resolution for PDF pages")
    max_pixels: int = Field(12_000_000, ge=10_000, description="pages are scaled down so width*height stays under this")


class OutputConfig(Strict):
    markdown: bool = Field(True, description="also write <name>.md in reading order")
    combined: bool = Field(
        False,
        description="also write <name>.pages.json: the list of page records (image_name, ocr_pass_result, "
        "picture_ocr_result) of the DOTS+Gemma pipeline format; image_name is the page PNG's path relative to the "
        "output directory with page_images, null without",
    )
    page_images: bool = Field(
        False,
        description="also write each page as the engines saw it, <name>.images/pages/page-0001.png, listed in <name>.images.json; "
        "--page-images",
    )
    crops: bool = Field(
        False,
        description="also write each picture crop as picture OCR read it (padded, upscaled), "
        "<name>.images/crops/page-0001-region-03.png, listed with page, region_id, bbox, padding and upscale in "
        "<name>.images.json; needs ocr.picture.enabled; --crops",
    )


class OCRConfig(Strict):
    inputs: InputConfig = Field(default_factory=InputConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    layout: LayoutConfig = Field(default_factory=LayoutConfig)
    picture: PictureConfig = Field(default_factory=PictureConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    retries: int = Field(1, ge=0, le=5, description="extra attempts for a page whose engine raised")
    page_timeout_s: float | None = Field(
        None, gt=0, description="seconds an engine may take per page (per crop for picture OCR) before the page "
        "becomes an error record and the actor is replaced; null: no limit"
    )
    split_num_cpus: float = Field(
        0.25, gt=0, description="logical CPUs per read/split/crop/assemble task (kept small so actors cannot starve them)"
    )
    page_block_bytes: int | None = Field(
        None, ge=64 * 1024, description="Ray Data's target block size (DataContext.target_max_block_size): pages leave"
        " the split stage in blocks of about this many bytes, and a block goes to one layout actor. null: 1 MiB where"
        " the layout engine reads one-page PDFs (a few scanned pages a block, so a long document spreads over the"
        " pool), Ray Data's default where it reads rasterized pages (several MB each) (pipeline/dataflow.py)"
    )
    progress: bool = Field(True, description="show Ray Data's per-operator progress bars")
    trust_remote_code: bool = Field(
        False,
        description="let every model engine run its checkpoint's own modelling code (the published dots.ocr ships some); "
        "same as trust_remote_code: true in each model engine's options; --trust-remote-code",
    )

    @model_validator(mode="after")
    def _crops_need_picture_ocr(self) -> OCRConfig:
        if self.output.crops and not self.picture.enabled:
            raise ValueError("ocr.output.crops writes the crops picture OCR reads: it needs ocr.picture.enabled")
        return self

    @model_validator(mode="after")
    def _trust_remote_code(self) -> OCRConfig:
        if self.trust_remote_code:
            for section in (self.layout, self.picture):
                if "trust_remote_code" in section.options:  # engines that load a checkpoint (vlm.loading.ModelSource)
                    object.__setattr__(section, "options", {**section.options, "trust_remote_code": True})
        return self

    def fingerprint_payload(self) -> dict[str, Any]:
        """The settings that change a report's content; resources and output toggles do not."""
        return {
            "inputs": self.inputs.model_dump(mode="json", include={"pages", "max_pages"}),
            "render": self.render.model_dump(mode="json"),
            "layout": {"engine": self.layout.engine, "options": self.layout.options},
            "picture": self.picture.model_dump(mode="json", include={"engine", "enabled", "options", "crop"}),
        }


# --------------------------------------------------------------------------- train / tune
from training.settings import TrainSettings as TrainConfig  # noqa: E402  (the training jobs own their section)
from tune.settings import TuneSettings as TuneConfig  # noqa: E402  (the sweep job owns its section)


class AppConfig(Strict):
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    ocr: OCRConfig = Field(default_factory=OCRConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

