"""Compression sweep: settings, points, the Pareto front, pooling in the OCR engine, and a real
sweep on a tiny model (interrupted, resumed, a failed trial, one short distillation), whose
best.yaml the OCR job then serves.

The tiny model has random weights, so its accuracies are near 0: the checks are about what
the sweep does with whatever it measures, never about particular numbers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from tune.pareto import analyse, dominates, pareto_front, plot, read_table
from tune.settings import SpaceSettings, Target, TargetSettings, TuneSettings
from tune.space import BASELINE, TrialPoint, grid_points, optuna_axes

# --------------------------------------------------------------------------- settings and points (no Ray)


def test_space_values_are_validated() -> None:
    from pydantic import ValidationError

    space = SpaceSettings(
        ratio={"low": 1, "high": 2, "step": 0.5}, parts="both", pooling=["none", "avg:2", {"method": "norm_drop", "keep_ratio": 0.5}]
    )
    assert space.ratios() == [1.0, 1.5, 2.0]
    assert space.parts == ["both"]
    assert [p.label for p in space.pooling] == ["none", "avg:2", "norm_drop:0.5"]
    for bad in ({"ratio": [0.5]}, {"pooling": ["avg"]}, {"pooling": ["norm_drop:1.5"]}, {"pooling": [{"method": "avg", "keep_ratio": 0.5}]},
                {"max_pixels": [100]}, {"distill_steps": [-1]}, {"parts": ["decoder"]}, {"ratio": {"low": 3, "high": 2}}):
        with pytest.raises(ValidationError):
            SpaceSettings(**bad)
    with pytest.raises(ValidationError):
        TuneSettings(name="has space")


def test_targets_are_absolute_relative_or_baseline_deltas() -> None:
    assert Target.model_validate(0.9).resolve(0.5) == 0.9
    assert Target.model_validate("50%").resolve(8.0) == pytest.approx(4.0)
    assert Target.model_validate("baseline-0.01").resolve(0.8) == pytest.approx(0.79)
    assert Target.model_validate("baseline").resolve(0.8) == pytest.approx(0.8)
    assert Target.model_validate("99%").resolve(None) is None
    with pytest.raises(ValueError):
        Target.model_validate("most")


def test_grid_runs_the_baseline_first_and_each_distinct_model_once() -> None:
    settings = TuneSettings(
        space={"ratio": [2, 1], "parts": ["language", "vision"], "pooling": ["avg:2"], "max_pixels": [4704], "distill_steps": [0, 5]}
    )
    points = grid_points(settings)
    assert points[0] == BASELINE and BASELINE.ratio == 1.0 and BASELINE.pooling == "none" and BASELINE.max_pixels is None
    assert len(points) == len(set(points)) == len({p.key for p in points})
    # ratio 1 compresses and distils nothing: one point however many parts and steps are listed
    uncompressed = [p for p in points if p.ratio == 1.0 and not p.is_baseline]
    assert uncompressed == [TrialPoint.make(1, "language", "avg:2", 4704, 5)] and uncompressed[0].distill_steps == 0
    assert len(points) == 1 + 1 + 2 * 2  # baseline, ratio 1 pooled, ratio 2 x parts x steps
    axes = optuna_axes(settings)  # Optuna's categories hold the baseline's values, so it can be enqueued
    assert 1.0 in axes["ratio"] and "none" in axes["pooling"] and None in axes["max_pixels"] and 0 in axes["distill_steps"]


def test_optuna_starts_with_the_baseline_and_suggests_points_of_the_space() -> None:
    from tune.space import param_space, search_algorithm

    settings = TuneSettings(search={"algorithm": "optuna", "seed": 1},
                            space={"ratio": [2, 3], "pooling": ["avg:2", "max:2"], "max_pixels": [4704], "distill_steps": [0]})
    search = search_algorithm(settings)
    assert search.metric == ["accuracy", "flops_per_page"] and search.mode == ["max", "min"]
    search.set_search_properties(None, None, param_space(settings))
    first = TrialPoint.from_config(search.suggest("t0"))
    assert first == BASELINE
    search.on_trial_complete("t0", {"accuracy": 0.9, "flops_per_page": 1e9})
    allowed = {TrialPoint.make(r, p, pool, px, 0) for r in (1, 2, 3) for p in ("both",) for pool in ("none", "avg:2", "max:2") for px in (None, 4704)}
    for i in range(1, 6):
        point = TrialPoint.from_config(search.suggest(f"t{i}"))
        assert point in allowed
        search.on_trial_complete(f"t{i}", {"accuracy": 0.5 + 0.05 * i, "flops_per_page": 1e8 * i})


# --------------------------------------------------------------------------- the front (no Ray)


def _random_rows(seed: int, count: int = 40) -> list[dict]:
    rng = random.Random(seed)
    rows = [{**BASELINE.as_dict(), "key": BASELINE.key, "trial_id": "b", "status": "done", "accuracy": 0.9, "flops_per_page": 1e9}]
    for i in range(count):
        point = TrialPoint.make(rng.choice([2, 3, 4]), "both", rng.choice(["none", "avg:2"]), None, 0)
        accuracy = round(rng.uniform(0.5, 0.95), 2)  # rounded: ties happen
        rows.append({**point.as_dict(), "key": point.key, "trial_id": str(i), "status": "done", "accuracy": accuracy,
                     "flops_per_page": float(rng.choice([2e8, 4e8, 6e8, 8e8, 1e9]))})
    rows.append({**BASELINE.as_dict(), "key": "broken", "trial_id": "e", "status": "error", "error": "boom"})
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_front_is_exactly_the_non_dominated_rows(seed: int) -> None:
    rows = _random_rows(seed)
    front = pareto_front(rows)
    scored = [r for r in rows if r["status"] == "done"]
    on_front = {id(r) for r in front}
    for row in scored:
        dominated = any(dominates(other, row) for other in scored)
        assert (id(row) in on_front) == (not dominated)
    assert all(r["status"] == "done" for r in front)
    assert [r["flops_per_page"] for r in front] == sorted(r["flops_per_page"] for r in front)


def test_report_names_the_cheapest_accurate_and_the_most_accurate_cheap_configuration(tmp_path: Path) -> None:
    rows = _random_rows(3)
    scored = [r for r in rows if r["status"] == "done"]
    analysis = analyse(rows, TargetSettings(accuracy_min="baseline-0.1", flops_max="50%"))
    accuracy_min, flops_max = analysis["targets"]["accuracy_min"], analysis["targets"]["flops_max"]
    assert accuracy_min == pytest.approx(0.8) and flops_max == pytest.approx(5e8)
    cheapest = analysis["cheapest_meeting_accuracy"]
    assert cheapest["accuracy"] >= accuracy_min
    assert cheapest["flops_per_page"] == min(r["flops_per_page"] for r in scored if r["accuracy"] >= accuracy_min)
    best_cheap = analysis["most_accurate_under_flops"]
    assert best_cheap["flops_per_page"] <= flops_max
    assert best_cheap["accuracy"] == max(r["accuracy"] for r in scored if r["flops_per_page"] <= flops_max)
    assert "Cheapest configuration" in analysis["message"] and analysis["counts"]["error"] == 1
    assert plot(rows, analysis, tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    impossible = analyse(rows, TargetSettings(accuracy_min=0.99, flops_max=1.0))
    assert impossible["winner"] is None and impossible["cheapest_meeting_accuracy"] is None
    assert "No configuration reaches accuracy" in impossible["message"] and "No configuration meets both targets" in impossible["message"]


# --------------------------------------------------------------------------- pooling in the OCR engine (no Ray)


def test_dots_engine_serves_pooled_tokens(tiny_qwen_dir: Path) -> None:
    import numpy as np
    from PIL import Image

    from compression.pooling import PoolingConfig, token_pooling_config
    from engines.base import PageImage, PageMeta
    from engines.generative.generation import Request
    from engines.generative.options import GenerativeEngineOptions
    from engines.registry import build_engine

    with pytest.raises(ValueError, match="transformers"):
        GenerativeEngineOptions(model="m", backend="vllm", pooling="avg:2")
    options = {"model": str(tiny_qwen_dir), "max_new_tokens": 3, "extra_max_new_tokens": 0, "max_pixels": 224 * 224, "prompt_mode": "ocr"}
    plain = build_engine("dots", "layout", options)
    pooled = build_engine("dots", "layout", {**options, "pooling": {"method": "avg", "factor": 2}})
    assert token_pooling_config(plain.generator.model) is None
    assert token_pooling_config(pooled.generator.model) == PoolingConfig(factor=2, method="avg")
    image = PageImage(image=np.full((112, 224, 3), 255, np.uint8), meta=PageMeta(doc_id="d", source="d.png", page_number=1, width=224, height=112))
    request = [Request(image=Image.fromarray(image.image), prompt="Read.")]
    image_id = plain.generator.model.config.image_token_id
    counts = [int((engine.generator.encode(request)["input_ids"] == image_id).sum()) for engine in (plain, pooled)]
    assert counts[1] < counts[0]
    (layout,) = pooled.layout([image])
    assert layout.info["new_tokens"] >= 0
    plain.close()
    pooled.close()


# --------------------------------------------------------------------------- a real sweep (Ray)

FAIL_POINT = {"ratio": 2.0, "pooling": "avg:2", "distill_steps": 2}


@pytest.fixture(scope="module")
def lines_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.data.synthetic import SyntheticConfig, write_splits

    folder = tmp_path_factory.mktemp("sweep_lines")
    write_splits(SyntheticConfig(augment=False, max_chars=8, width=112), folder, {"train": 32, "val": 4, "test": 6})
    return folder


def _config_file(folder: Path, model: Path, data: Path) -> Path:
    """6 points: baseline, pooled ratio 1, ratio 2 x pooling x (0, 2 distillation steps); one of them fails."""
    config = {
        "train": {
            "scaling": {"num_workers": 1, "cpus_per_worker": 0.5},
            "optim": {"micro_batch_size": 4, "warmup_steps": 0},
            "checkpoint": {"every_steps": 1, "log_every_steps": 0, "max_failures": 0},
            "data": {"eval_samples": 2, "max_new_tokens": 6},
        },
        "tune": {
            "name": "tiny", "storage_path": str(folder / "ray_results"), "model": str(model), "data": str(data),
            "space": {"ratio": [1, 2], "parts": ["both"], "pooling": ["none", "avg:2"], "max_pixels": [None], "distill_steps": [0, 2]},
            "max_concurrent_trials": 2,
            "resources": {"cpu": 0.75},  # two trials and one distillation worker fit on 2 CPUs
            "eval": {"limit": 6, "batch_size": 6, "flops_pages": 2},
            "targets": {"accuracy_min": "baseline-0.01"},
        },
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def sweep_run(ray_cpu, tmp_path_factory: pytest.TempPathFactory, tiny_qwen_dir: Path, lines_dir: Path) -> dict:
    """Interrupted after 2 trials, resumed to the end, then rerun once more through the command line."""
    from configuration import load_config
    from configuration.plugins import Plugin
    from jobs.sweep import main, run_sweep
    from tests.fault_hooks import InterruptAfter
    from tune.trial import TrialSpec

    folder = tmp_path_factory.mktemp("sweep")
    config_path = _config_file(folder, tiny_qwen_dir, lines_dir)
    config = load_config([config_path])
    run_dir = folder / "ray_results" / "tiny"
    fail = [Plugin(target="tests.fault_hooks:FailAtPoints", options={"points": [FAIL_POINT]})]
    first = run_sweep(config, callbacks=[InterruptAfter(2, run_dir / ".interrupted")], before_trial=fail)
    finished_first = sorted(p.stem for p in (run_dir / "trials").glob("*.json"))
    second = run_sweep(load_config([config_path]), before_trial=fail)
    spec = TrialSpec(name="tiny", run_dir=str(run_dir), model=str(tiny_qwen_dir), data=str(lines_dir))
    executions_before_cli = {p.key: _executions(spec, p) for p in grid_points(config.tune)}
    code = main(["--config", str(config_path)])
    return {"first": first, "second": second, "finished_first": finished_first, "run_dir": run_dir, "spec": spec,
            "config": config, "executions_before_cli": executions_before_cli, "cli_code": code}


def _executions(spec, point: TrialPoint) -> int:
    from tune.trial import execution_count

    return execution_count(spec, point)


@pytest.mark.ray
def test_sweep_writes_every_output(sweep_run: dict) -> None:
    run_dir: Path = sweep_run["run_dir"]
    assert sweep_run["second"]["status"] == "complete" and sweep_run["cli_code"] == 0
    for name in ("trials.csv", "pareto.json", "pareto.png", "best.yaml"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_table(run_dir / "trials.csv")
    points = grid_points(sweep_run["config"].tune)
    assert len(points) >= 4 and sorted(r["key"] for r in rows) == sorted(p.key for p in points)
    by_key = {r["key"]: r for r in rows}
    failing = TrialPoint.make(FAIL_POINT["ratio"], "both", FAIL_POINT["pooling"], None, FAIL_POINT["distill_steps"])
    assert by_key[failing.key]["status"] == "error" and "injected failure" in by_key[failing.key]["error"]
    done = [r for r in rows if r["key"] != failing.key]
    assert all(r["status"] == "done" for r in done), [(r["key"], r["status"], r.get("error")) for r in done]
    for row in done:
        assert 0 <= row["accuracy"] <= 1 and row["flops_per_page"] > 0 and row["params"] > 0 and row["seconds_per_page"] > 0
        assert row["flops_per_page"] >= row["vision_flops"] + row["prefill_flops"]
    baseline = by_key[BASELINE.key]
    compressed = [r for r in done if r["ratio"] > 1]
    assert all(r["params"] < baseline["params"] for r in compressed)
    pooled = [r for r in done if r["pooling"] != "none"]
    assert all(r["visual_tokens"] < baseline["visual_tokens"] for r in pooled)
    # one short distillation, whose intermediate report reached Tune before the final one
    distilled = [r for r in done if r["distill_steps"] > 0]
    assert len(distilled) == 1 and distilled[0]["training_iteration"] >= 2
    assert Path(distilled[0]["model_dir"]).parent.name == "r2-both-d2"
    # SVD factors once per (ratio, parts): every ratio-2 evaluation without distillation loads the same folder
    assert {Path(r["model_dir"]).resolve() for r in compressed if r["distill_steps"] == 0} == {(run_dir / "models" / "r2-both").resolve()}
    report = json.loads((run_dir / "pareto.json").read_text())
    assert report["baseline"]["key"] == BASELINE.key
    assert report["counts"] == {"trials": len(points), "done": len(done), "error": 1, "stopped": 0, "unfinished": 0}
    assert report["winner"] is not None and report["winner"]["accuracy"] >= report["targets"]["accuracy_min"]


@pytest.mark.ray
def test_every_front_trial_is_non_dominated_and_every_dominated_trial_is_off_it(sweep_run: dict) -> None:
    run_dir: Path = sweep_run["run_dir"]
    rows = [r for r in read_table(run_dir / "trials.csv") if r["status"] == "done"]
    front_keys = {entry["key"] for entry in json.loads((run_dir / "pareto.json").read_text())["front"]}
    assert front_keys
    for row in rows:
        dominated = any(o["accuracy"] >= row["accuracy"] and o["flops_per_page"] <= row["flops_per_page"]
                        and (o["accuracy"] > row["accuracy"] or o["flops_per_page"] < row["flops_per_page"]) for o in rows)
        assert (row["key"] in front_keys) == (not dominated), row["key"]
        assert row["on_front"] == (row["key"] in front_keys)


@pytest.mark.ray
def test_interrupted_sweep_resumes_without_redoing_finished_trials(sweep_run: dict) -> None:
    first, finished_first = sweep_run["first"], sweep_run["finished_first"]
    assert first["status"] == "interrupted"
    points = grid_points(sweep_run["config"].tune)
    assert 2 <= len(finished_first) < len(points) - 1  # some trials finished, others were still to come
    for point in points:
        runs = _executions(sweep_run["spec"], point)
        if point.key in finished_first:
            assert runs == 1, point.key  # finished before the interruption: never computed again
        else:
            assert runs >= 1, point.key
    # rerunning the finished sweep through the command line computes nothing
    assert {p.key: _executions(sweep_run["spec"], p) for p in points} == sweep_run["executions_before_cli"]


@pytest.mark.ray
def test_best_yaml_is_served_by_the_ocr_job(sweep_run: dict, lines_dir: Path, tmp_path: Path) -> None:
    from compression.pooling import token_pooling_config
    from compression.settings import PoolingConfig
    from configuration import load_config
    from jobs.ocr import main as ocr_main
    from training.data.sources import DatasetSpec, iter_records

    best = sweep_run["run_dir"] / "best.yaml"
    winner = json.loads((sweep_run["run_dir"] / "pareto.json").read_text())["winner"]
    layout = load_config([best]).ocr.layout
    assert layout.engine == "dots" and layout.options["model"] == winner["model_dir"]
    assert PoolingConfig.model_validate(layout.options["pooling"]).label == winner["pooling"]

    from engines.registry import build_engine

    engine = build_engine("dots", "layout", {**layout.options, "max_new_tokens": 2, "extra_max_new_tokens": 0})
    expected = PoolingConfig.model_validate(winner["pooling"])
    assert token_pooling_config(engine.generator.model) == expected
    engine.close()

    page = tmp_path / "inputs" / "line.png"
    page.parent.mkdir()
    next(iter_records(DatasetSpec(path=str(lines_dir), split="test", limit=1))).image.save(page)
    out = tmp_path / "out"
    args = [str(page.parent), "--out", str(out), "--config", str(best),
            "--set", "ocr.layout.options.max_new_tokens=4", "--set", "ocr.layout.options.extra_max_new_tokens=0",
            "--set", "ocr.picture.enabled=false", "--set", "ocr.layout.pool={concurrency: [1, 1], batch_size: 1, num_cpus: 1, num_gpus: 0}"]
    assert ocr_main(args) == 0
    report = json.loads((out / "line.png.json").read_text())
    (record,) = report["pages"]
    assert record["engines"]["layout"] == "dots"
    # random weights never stop on their own: the page is read up to the budget and kept with its raw output
    assert record["error"] is None or record["error"]["kind"] == "truncated_output"
    assert 0 <= record["info"]["new_tokens"] <= 4
