"""Orchestrate one OCR run: discover, skip finished documents, stream, write, summarize."""

from __future__ import annotations

import logging
from pathlib import Path

from configuration.loader import fingerprint, to_yaml
from configuration.schema import AppConfig
from documents.assembly import DocumentAssembler
from documents.images import ImageIndex, images_complete
from documents.inputs import InputDocument, discover, sha256_of_file
from documents.outputs import write_document
from documents.writer import atomic_write, atomic_write_json, existing_report_matches, report_path
from pipeline.summary import RunSummary

log = logging.getLogger("jobs.ocr")


def pending_documents(
    documents: list[InputDocument], out_dir: Path, config_fingerprint: str, force: bool, retry_failed: bool,
    page_images: bool = False, crops: bool = False,
) -> tuple[list[InputDocument], int]:
    """Documents that still need a run; resume skips those whose report matches file and config
    and whose page/crop images, where asked for, are all on disk."""
    if force:
        return documents, 0
    todo, skipped = [], 0
    for document in documents:
        path = report_path(out_dir, document.name)
        if path.exists():
            try:
                digest = sha256_of_file(document.path)
            except OSError:
                digest = None  # unreadable now: let the read stage record why
            if (
                digest
                and existing_report_matches(path, digest, config_fingerprint, retry_failed)
                and images_complete(out_dir, document.name, page_images, crops)
            ):
                skipped += 1
                continue
        todo.append(document)
    return todo, skipped


def run_ocr(config: AppConfig, inputs: list[str], out_dir: Path, force: bool = False, retry_failed: bool = False) -> RunSummary:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "effective_config.yaml", to_yaml(config))
    ocr = config.ocr
    config_fingerprint = fingerprint(config)
    summary = RunSummary(config_fingerprint=config_fingerprint)

    documents, problems = discover(inputs, ocr.inputs.extensions)
    summary.input_problems = [{"input": p.input, "message": p.message} for p in problems]
    for problem in problems:
        log.warning("input %s: %s", problem.input, problem.message)
    summary.documents_total = len(documents)
    todo, summary.documents_skipped = pending_documents(
        documents, out_dir, config_fingerprint, force, retry_failed, ocr.output.page_images, ocr.output.crops
    )
    if summary.documents_skipped:
        log.info("resume: %d document(s) already done, %d to go", summary.documents_skipped, len(todo))

    if todo:
        _stream(config, todo, out_dir, config_fingerprint, summary)
    summary.finish()
    atomic_write_json(out_dir / "summary.json", summary.to_dict())
    summary.render()
    return summary


def _stream(config: AppConfig, todo: list[InputDocument], out_dir: Path, config_fingerprint: str, summary: RunSummary) -> None:
    import ray

    from actors.stages import assemble_page
    from launch.ray_session import ray_connection
    from pipeline.dataflow import build_dataset, check_capacity, initial_layout_actors

    ocr = config.ocr
    engines = {"layout": ocr.layout.engine}
    if ocr.picture.enabled:
        engines["picture"] = ocr.picture.engine
    assembler = DocumentAssembler(config_fingerprint, engines)
    images = ImageIndex()  # names of the page/crop PNGs the stages wrote, until their document is done

    def finish(report) -> None:
        write_document(
            out_dir, report, ocr.output.markdown, ocr.output.combined,
            images.pop(report.name), ocr.output.page_images, ocr.output.crops,
        )
        summary.add(report)
        status = f"error {report.error.kind}" if report.error else f"{len(report.pages)} pages, {report.pages_failed} failed"
        log.info("[%d/%d] %s (%s)", summary.documents_written, len(todo), report.name, status)

    with ray_connection(config.cluster) as where:
        summary.ray = where
        log.info("running on %s: %d document(s)", where, len(todo))
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        check_capacity(ocr, cpus, gpus)
        dataset = build_dataset(todo, ocr, out_dir, initial_layout_actors(ocr, cpus, gpus, todo))
        for row in dataset.iter_rows():
            page = assemble_page(row)
            images.add(page)
            report = assembler.add(page)
            if report is not None:
                finish(report)
        for report in assembler.flush():
            finish(report)
        summary.duplicate_rows_dropped = assembler.duplicates
        try:
            atomic_write(out_dir / "ray_data_stats.txt", dataset.stats())
        except Exception as exc:  # noqa: BLE001 - stats are a nicety
            log.warning("could not write Ray Data stats: %s", exc)
