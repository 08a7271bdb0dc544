"""The OCR pipeline as a streaming Ray Data graph.

    from_items(documents)
      -> map(read_document)             read bytes, sha256, sniff type        (CPU tasks)
      -> flat_map(split_document)       one row per selected page, rasterized (CPU tasks)
                                        where the layout engine reads pixels
      -> map_batches(LayoutActor)       layout engine actor pool              (CPU or GPU)
      -> map(crop_page)                 picture-region crops                  (CPU tasks; with picture OCR)
      -> map_batches(PictureOCRActor)   picture OCR actor pool                (CPU or GPU; when enabled)
      -> driver: assemble_page          page record, validated
         DocumentAssembler              per-document report, written atomically

Documents are re-grouped on the driver rather than with ``groupby``: a groupby is an
all-to-all barrier that would wait for the whole input, while the driver can write each
report as soon as its last page arrives, which also makes a killed run resumable.

Page and crop PNGs, when asked for (``ocr.output.page_images`` / ``crops``), are written
into the output directory by the split and crop tasks, which hold the pixels; only their
names reach the driver (``documents/images.py``).

Page records are assembled on the driver too (about a millisecond per page), not in a
last ``map``: Ray Data's resource allocator gives the last operator what the actor pools
leave, which on a small node is nothing, so its tasks waited until the actors finished
and no report was written before the end of the run (``docs/ocr-pipeline.md``).

A block of pages goes to one layout actor whole, and Ray Data cuts a task's output into
blocks only past ``DataContext.target_max_block_size`` (128 MiB by default): a document's
pages, a few hundred kilobytes each as one-page PDFs, left the split stage as one block,
so a single long PDF was read by one actor however many the cluster had. Where the
layout engine reads one-page PDFs, blocks of 1 MiB (``ocr.page_block_bytes``) carry a
handful of scanned pages, and the pool reads them side by side. Rows that carry a
rasterized page (several MB each, for pixel engines such as DOTS) keep Ray Data's
default: at 1 MiB every page was a block, and on the memory bench's fast engine the
object store then grew with the input (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import ray
from ray.data import ActorPoolStrategy, DataContext, Dataset

from actors.engine_actors import LayoutActor, PictureOCRActor
from actors.stages import crop_page, read_document, split_document
from configuration.schema import ActorPoolConfig, OCRConfig
from documents.inputs import InputDocument
from engines.registry import layout_reads


def _pool_args(pool: ActorPoolConfig, initial: int | None = None) -> dict[str, Any]:
    """Actor-pool arguments, the pool starting with ``initial`` actors (default: its minimum). Ray Data's defaults
    already restart crashed actors without limit (max_restarts=-1) and re-run their tasks elsewhere
    (max_task_retries=-1), so a killed actor loses no page; we keep those defaults."""
    low, high = pool.concurrency
    return {
        "batch_size": pool.batch_size,
        "compute": ActorPoolStrategy(min_size=low, max_size=high, initial_size=initial or low),
        "num_cpus": pool.num_cpus,
        "num_gpus": pool.num_gpus,
        "batch_format": "numpy",
    }


#: ``ocr.page_block_bytes`` when null and the layout engine reads one-page PDFs (100-300 KB a scanned page, median).
PDF_PAGE_BLOCK_BYTES = 1024 * 1024


def page_block_bytes(ocr: OCRConfig) -> int:
    """The run's target block size: ``ocr.page_block_bytes``, else by what the rows carry (module docstring)."""
    if ocr.page_block_bytes is not None:
        return ocr.page_block_bytes
    if layout_reads(ocr.layout.engine) == "pdf":
        return PDF_PAGE_BLOCK_BYTES
    return DataContext().target_max_block_size  # Ray Data's own default


def configure_data_context(ocr: OCRConfig) -> None:
    context = DataContext.get_current()
    context.target_max_block_size = page_block_bytes(ocr)  # a long document's pages spread over the layout actors
    context.enable_progress_bars = ocr.progress
    # Off by default under `ray job submit`; the issue asks for per-operator progress.
    context.enable_operator_progress_bars = ocr.progress
    # Exceptions are caught per row inside every stage; if one still escapes, fail loudly
    # rather than silently dropping the block's pages.
    context.max_errored_blocks = 0
    context.actor_task_retry_on_errors = False


class CapacityError(RuntimeError):
    """The cluster cannot host the configured minimum actor pools plus the CPU stages."""


def _engine_pools(ocr: OCRConfig) -> list[tuple[str, ActorPoolConfig]]:
    """The actor pools the run starts, by config key."""
    pools = [("ocr.layout.pool", ocr.layout.pool)]
    if ocr.picture.enabled:
        pools.append(("ocr.picture.pool", ocr.picture.pool))
    return pools


def _minimum_need(ocr: OCRConfig, pools: list[tuple[str, ActorPoolConfig]]) -> tuple[float, float]:
    """CPUs and GPUs that ``pools`` at their minimum size and one CPU-stage task hold."""
    cpus = sum(pool.concurrency[0] * pool.num_cpus for _, pool in pools) + ocr.split_num_cpus
    gpus = sum(pool.concurrency[0] * pool.num_gpus for _, pool in pools)
    return cpus, gpus


def check_capacity(ocr: OCRConfig, cluster_cpus: float, cluster_gpus: float) -> None:
    """Refuse a config whose minimum actor pools leave no CPU for the CPU stages (Ray Data would hang)."""
    pools = _engine_pools(ocr)
    cpus, gpus = _minimum_need(ocr, pools)
    if cpus > cluster_cpus + 1e-9 or gpus > cluster_gpus + 1e-9:
        detail = ", ".join(f"{key}: {pool.concurrency[0]} x {pool.num_cpus} CPU, {pool.num_gpus} GPU" for key, pool in pools)
        raise CapacityError(
            f"the cluster has {cluster_cpus:g} CPU / {cluster_gpus:g} GPU, but the minimum actor pools ({detail}) plus "
            f"ocr.split_num_cpus={ocr.split_num_cpus} need {cpus:g} CPU / {gpus:g} GPU; lower the pools' "
            "concurrency minimum or num_cpus/num_gpus"
        )


def initial_layout_actors(ocr: OCRConfig, cluster_cpus: float, cluster_gpus: float, documents: Sequence[InputDocument]) -> int:
    """How many layout actors to start with: as many as the cluster fits beside the other pools' minimum and a
    CPU-stage task, within the pool's bounds, and no more than there will be blocks of pages to read
    (``page_blocks``).

    Ray Data would otherwise start the pool at its minimum and add actors one at a time
    as its queue grows; each new actor then spends its start-up (imports, models) while
    the first pages wait: on 2 cores the second CPU actor began 8 s after the first.
    """
    pool = ocr.layout.pool
    held_cpus, held_gpus = _minimum_need(ocr, [item for item in _engine_pools(ocr) if item[1] is not pool])
    fit = int((cluster_cpus - held_cpus + 1e-9) // pool.num_cpus)
    if pool.num_gpus:
        fit = min(fit, int((cluster_gpus - held_gpus + 1e-9) // pool.num_gpus))
    low, high = pool.concurrency
    wanted = min(fit, high if high is not None else fit)
    return max(low, min(wanted, page_blocks(documents, page_block_bytes(ocr), enough=wanted)))


def page_blocks(documents: Sequence[InputDocument], block_bytes: int, enough: int) -> int:
    """About how many blocks of pages the split stage makes of ``documents`` (their bytes over ``block_bytes``, at
    least one each), counted only until there are ``enough``: a file is looked at (``stat``) only then."""
    blocks = 0
    for document in documents:
        if blocks >= enough:
            break
        try:
            size = os.path.getsize(document.path)
        except OSError:  # the read stage records why
            size = 0
        blocks += max(1, math.ceil(size / block_bytes))
    return blocks


def build_dataset(documents: list[InputDocument], ocr: OCRConfig, out_dir: Path | None = None,
                  layout_actors: int | None = None) -> Dataset:
    """The streaming graph; ``out_dir`` is where the stages write page and crop PNGs, if asked for; the layout pool
    starts with ``layout_actors`` actors (``initial_layout_actors``; default: its minimum)."""
    configure_data_context(ocr)
    if out_dir is None and (ocr.output.page_images or ocr.output.crops):
        raise ValueError("ocr.output.page_images / ocr.output.crops need the output directory")
    images_dir = str(out_dir.resolve()) if out_dir is not None else None
    items = [{"doc_id": d.doc_id, "name": d.name, "source_path": d.path} for d in documents]
    limits = {
        "dpi": ocr.render.dpi,
        "max_pixels": ocr.render.max_pixels,
        "max_image_pixels": ocr.inputs.max_image_pixels,
        "pages": ocr.inputs.pages,
        "max_pages": ocr.inputs.max_pages,
        # An engine that reads the one-page PDF gets no rasterized page: the split stage
        # skips rendering and the rows carry kilobytes instead of width x height x 3 bytes
        # (6.5 MB for an A4 page at 150 dpi); picture crops are rendered from the PDF.
        "pixels": layout_reads(ocr.layout.engine) == "pixels",
        # Encoded in the split task, which renders the page anyway; written from there.
        "page_png": ocr.output.page_images,
    }
    cpu = ocr.split_num_cpus
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 1000)))
    ds = ds.map(read_document, fn_kwargs={"max_file_bytes": ocr.inputs.max_file_bytes}, num_cpus=cpu)
    ds = ds.flat_map(
        split_document, fn_kwargs={"limits": limits, "out_dir": images_dir if ocr.output.page_images else None}, num_cpus=cpu
    )
    ds = ds.map_batches(
        LayoutActor,
        fn_constructor_kwargs={
            "engine": ocr.layout.engine, "options": ocr.layout.options, "retries": ocr.retries,
            "page_timeout_s": ocr.page_timeout_s, "crop_pictures": ocr.picture.enabled,
        },
        **_pool_args(ocr.layout.pool, layout_actors),
    )
    if not ocr.picture.enabled:  # the layout actors dropped the pages' pixels and PDFs: nothing left to crop
        return ds
    # Per page: bundling rows up to the picture batch size here would hold pages back
    # before the picture actors, which bundle for themselves.
    crop_kwargs = {"crop": ocr.picture.crop.model_dump(), "out_dir": images_dir if ocr.output.crops else None}
    ds = ds.map(crop_page, fn_kwargs=crop_kwargs, num_cpus=cpu)
    return ds.map_batches(
        PictureOCRActor,
        fn_constructor_kwargs={
            "engine": ocr.picture.engine, "options": ocr.picture.options, "retries": ocr.retries, "page_timeout_s": ocr.page_timeout_s
        },
        **_pool_args(ocr.picture.pool),
    )
