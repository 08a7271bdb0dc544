"""Compression sweep: a Ray Tune study over how hard to compress an OCR model.

    python -m jobs.sweep [--config ray_config.yaml] [--set tune.key=value ...] [--name NAME] [--out RUN]

Each trial compresses the model (PELA ratio on the language model, the vision tower or
both), pools its visual tokens, sets its resolution, optionally distils it for a few
steps on the Ray Train harness, and is scored on accuracy and on FLOPs per page
(``tune.trial``). The run folder then holds ``trials.csv``, ``pareto.json``,
``pareto.png`` and ``best.yaml`` (``tune.pareto``), which ``python -m jobs.ocr --config
best.yaml`` serves. Settings: the ``tune`` section (``tune.settings``). Rerunning with
the same ``tune.name`` and ``tune.storage_path`` resumes the sweep; finished trials are
never computed again. See docs/sweep.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ray.tune.integration.ray_train import TuneReportCallback

from configuration.plugins import Plugin
from configuration.schema import AppConfig
from launch.launcher import add_config_options
from launch.training import run_job
from tune.space import TrialPoint

log = logging.getLogger(__name__)

#: Keys Ray Tune adds to every result; left out of the trial table.
TUNE_KEYS = {
    "timestamp", "checkpoint_dir_name", "done", "date", "time_this_iter_s", "pid", "hostname", "node_ip", "config",
    "time_since_restore", "iterations_since_restore", "experiment_tag", "should_checkpoint", "checkpoint_path", "trial_id",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docvlm-sweep", description=__doc__.split("\n\n")[0])
    add_config_options(parser)
    parser.add_argument("--name", help="sweep name (= --set tune.name=NAME); the same name resumes the sweep")
    parser.add_argument("--out", type=Path, help="run folder for the outputs (default: tune.storage_path/NAME)")
    parser.add_argument("--model", help="model to compress: checkpoint folder or hub id (= --set tune.model=M)")
    parser.add_argument("--data", help="dataset the trials are scored on (= --set tune.data=D)")
    parser.add_argument("--concurrency", type=int, help="trials at once (= --set tune.max_concurrent_trials=N)")
    parser.add_argument("--trust-remote-code", action="store_const", const=True,
                        help="run the checkpoint's own modelling code, as the published dots.ocr needs (= --set tune.trust_remote_code=true)")
    parser.add_argument("--retry-errored", action="store_true", help="on resume, run failed trials again from scratch")
    return parser


#: Shortcut flags (argparse dest -> config key); precedence: ``launch.launcher``.
SHORTCUTS = {
    "name": "tune.name",
    "model": "tune.model",
    "data": "tune.data",
    "concurrency": "tune.max_concurrent_trials",
    "trust_remote_code": "tune.trust_remote_code",
}


# --------------------------------------------------------------------------- the trial (runs in a Tune actor)
def run_trial(config: dict[str, Any], spec_data: dict[str, Any]) -> None:
    """Tune trainable: answer from disk if this point finished before, else compress, distil, score, report."""
    from ray import tune as ray_tune

    from tune import trial

    spec = trial.TrialSpec.model_validate(spec_data)
    point = TrialPoint.from_config(config)
    cached = trial.cached_result(spec, point)
    if cached is not None:
        ray_tune.report({**cached, "cached": True})
        return
    trial.record_execution(spec, point)
    for plugin in spec.before_trial:
        plugin.build()(point=point.as_dict())
    device = trial.device_for(spec)
    model_path = trial.compressed_model(spec, point, device)
    if point.distill_steps > 0:
        model_path = distill(spec, point, model_path, device)
    metrics = {**trial.evaluate_point(spec, point, model_path, device), "cached": False}
    trial.save_result(spec, point, metrics)
    ray_tune.report(metrics)


def distill(spec: Any, point: TrialPoint, compressed_path: str, device: str) -> str:
    """PELA distillation on the Ray Train harness; intermediate accuracy goes to Tune (and to ASHA)."""
    import shutil

    from actors.train_worker import MODEL_DIR, WorkerJob
    from compression.persistence import is_compressed_checkpoint
    from launch.training import fit
    from tune import trial

    target = trial.distilled_dir(spec, point)
    with trial.file_lock(target.with_name(target.name + ".lock")):
        model_dir = target / MODEL_DIR
        if is_compressed_checkpoint(model_dir):
            return str(model_dir)
        extra = {**point.as_dict(), "key": point.key, **trial.flops_estimate(spec, point, compressed_path, device), "phase": "distill"}
        settings = trial.distill_settings(spec, point)
        job = WorkerJob(kind="distill", settings=settings, data_dir=spec.data, model_path=spec.model)
        fit(job, AppConfig(train=settings), f"{spec.name}-{point.distill_key}", target, callbacks=[IntermediateReport(extra)])
        summary = Path(compressed_path) / trial.COMPRESSION_FILE
        if summary.is_file():
            shutil.copy(summary, model_dir / trial.COMPRESSION_FILE)
    return str(model_dir)


class IntermediateReport(TuneReportCallback):
    """``TuneReportCallback`` that also reports ``accuracy`` (the checkpoint's val accuracy) and the point's FLOPs.

    Every report then carries both objectives, which OptunaSearch and ASHA require.
    """

    def __init__(self, extra: dict[str, Any]):
        super().__init__()
        self.extra = extra

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        first = dict(metrics[0]) if metrics else {}
        first.update(self.extra, accuracy=first.get("val_char_accuracy", 0.0))
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)


# --------------------------------------------------------------------------- the driver
def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _model_location(model: str) -> str:
    from vlm.loading import looks_like_path

    if not looks_like_path(model):
        return model  # a hub id
    path = Path(model).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"tune.model {model} does not exist (train the reference model with python -m jobs.train_reference, "
            "or point tune.model at a checkpoint)"
        )
    return str(path)


def check_same_sweep(run_dir: Path, config: AppConfig) -> None:
    """A resumed sweep must search what it started with; otherwise its table would mix two studies."""
    payload = config.tune.fingerprint_payload()
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    file = run_dir / "sweep.json"
    if file.is_file():
        found = json.loads(file.read_text()).get("fingerprint")
        if found != digest:
            raise ValueError(
                f"{run_dir} holds sweep {config.tune.name!r} over another model, data or search space (fingerprint {found}, now {digest}): "
                "rerun it with its original tune settings, or choose another --name"
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps({"fingerprint": digest, "name": config.tune.name, "tune": payload}, indent=2) + "\n")


def trial_spec(config: AppConfig, run_dir: Path, before_trial: Sequence[Plugin] = ()) -> Any:
    from tune.trial import TrialSpec

    settings = config.tune
    data = Path(settings.data).expanduser().resolve()
    if not data.exists():
        raise FileNotFoundError(f"tune.data {settings.data} does not exist")
    return TrialSpec(
        name=settings.name, run_dir=str(run_dir), model=_model_location(settings.model), data=str(data), dtype=settings.dtype,
        trust_remote_code=settings.trust_remote_code, eval=settings.eval, train=config.train,
        cpus=settings.resources.cpu, gpus=settings.resources.gpu, before_trial=list(before_trial),
    )


def run_sweep(
    config: AppConfig,
    *,
    run_dir: Path | None = None,
    retry_errored: bool = False,
    callbacks: Sequence[Any] = (),
    before_trial: Sequence[Plugin] = (),
) -> dict[str, Any]:
    """Run (or resume) the sweep on the current Ray session and write its outputs; returns the summary.

    ``callbacks``: Ray Tune callbacks for a new sweep (a resumed one keeps those it was started
    with); ``before_trial``: plugins each trial builds and calls with ``point=`` before it runs.
    """
    from ray import tune as ray_tune

    from tune import space
    from tune.pareto import write_outputs

    started = time.perf_counter()
    settings = config.tune
    storage = _absolute(settings.storage_path)
    if run_dir is None and "://" in storage:
        raise ValueError(f"tune.storage_path {storage} is remote: give the outputs a local run folder with --out")
    run = Path(run_dir).expanduser().resolve() if run_dir else Path(storage) / settings.name
    spec = trial_spec(config, run, before_trial)
    check_same_sweep(run, config)

    trainable = ray_tune.with_resources(
        ray_tune.with_parameters(run_trial, spec_data=spec.model_dump(mode="json")),
        {"cpu": settings.resources.cpu, "gpu": settings.resources.gpu},
    )
    params = space.param_space(settings)
    experiment = f"{storage.rstrip('/')}/{settings.name}"
    if ray_tune.Tuner.can_restore(experiment):
        log.info("resuming sweep %s from %s", settings.name, experiment)
        tuner = ray_tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, restart_errored=retry_errored, param_space=params)
    else:
        tuner = ray_tune.Tuner(
            trainable,
            param_space=params,
            tune_config=ray_tune.TuneConfig(
                search_alg=space.search_algorithm(settings),
                scheduler=space.scheduler(settings, config.train.checkpoint.every_steps),
                num_samples=space.num_samples(settings),
                max_concurrent_trials=settings.max_concurrent_trials,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=ray_tune.RunConfig(
                name=settings.name, storage_path=storage, failure_config=ray_tune.FailureConfig(max_failures=0), callbacks=list(callbacks)
            ),
        )
    grid = tuner.fit()
    rows, interrupted = collect_rows(grid)
    wall = time.perf_counter() - started
    status = "interrupted" if interrupted else "complete"
    extra = {"status": status, "name": settings.name, "experiment": experiment, "wall_seconds": wall,
             "max_concurrent_trials": settings.max_concurrent_trials}
    analysis = write_outputs(rows, settings, run, extra=extra)
    if interrupted:
        print(f"sweep {settings.name} was interrupted: rerun the same command to resume it", file=sys.stderr)
    print(analysis["message"], file=sys.stderr)
    return {"run_dir": str(run), **{k: analysis[k] for k in ("status", "name", "wall_seconds", "counts", "message", "winner", "files")}}


def collect_rows(grid: Any) -> tuple[list[dict[str, Any]], bool]:
    """One row per trial (point, metrics, status, error) and whether some trial is unfinished (an interrupted sweep).

    Metrics and errors come from the ``ResultGrid``; configs and statuses from the
    experiment state, since a trial that never reported has no ``Result.config``.
    """
    from ray.tune import ExperimentAnalysis

    state = {trial.path: trial for trial in ExperimentAnalysis(grid.experiment_path, storage_filesystem=grid.filesystem).trials}
    results = [grid[i] for i in range(len(grid))]
    interrupted = any(trial.status not in ("TERMINATED", "ERROR") for trial in state.values())
    rows = []
    for result in results:
        trial = state.get(result.path)
        metrics = dict(result.metrics or {})
        point = TrialPoint.from_config(result.config or (trial.config if trial else {}))
        trial_id = trial.trial_id if trial else Path(result.path).name.removeprefix("trial_")
        row: dict[str, Any] = {"trial_id": trial_id, **point.as_dict(), "key": point.key}
        row.update({key: value for key, value in metrics.items() if key not in TUNE_KEYS})
        row.update(point.as_dict())  # the point's own values win over anything reported
        status = trial.status if trial else ("ERROR" if result.error is not None else "TERMINATED")
        if result.error is not None or status == "ERROR":
            row.update(status="error", error=_error_text(result.error) if result.error is not None else "failed (see the trial folder)")
        elif status == "TERMINATED":
            row["status"] = "done" if metrics.get("phase") == "final" else "stopped"  # stopped: by the scheduler, mid-distillation
        else:
            row["status"] = "unfinished"
        row["trial_dir"] = result.path
        rows.append(row)
    return rows, interrupted


def _error_text(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[-1] if lines else repr(error)
    return text[:500]


# --------------------------------------------------------------------------- command line
def sweep(args: argparse.Namespace, config: AppConfig) -> dict[str, Any]:
    return run_sweep(config, run_dir=args.out, retry_errored=args.retry_errored)


def main(argv: list[str] | None = None) -> int:
    """Exit code 0: the sweep finished (failed trials included); 130: interrupted (rerun to resume); 2: bad input."""
    outcome: dict[str, Any] = {}

    def body(args: argparse.Namespace, config: AppConfig) -> dict[str, Any]:
        outcome.update(sweep(args, config))
        return outcome

    code = run_job("jobs.sweep", argv, build_parser(), body, SHORTCUTS)
    return 130 if code == 0 and outcome.get("status") == "interrupted" else code


def cli() -> None:
    """Console-script entry point (``docvlm-sweep``)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
