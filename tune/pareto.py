"""What a finished (or interrupted) sweep says: the trial table, the Pareto front, the targets, the winner.

Pure functions over the trial rows (plain dicts, one per trial: the point, its metrics,
``status`` done | error | stopped | unfinished, ``error``), so they are tested without Ray
and rerun on any table. Two objectives: ``accuracy`` (higher is better) and
``flops_per_page`` (lower is better). A row dominates another when it is at least as
good in both and better in one; the front is every finished row that no other finished
row dominates (equal rows are both on it).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from tune.settings import TargetSettings, TuneSettings
from tune.space import BASELINE

ACCURACY, FLOPS = "accuracy", "flops_per_page"

#: Leading columns of trials.csv; every other key follows in alphabetical order.
COLUMNS = [
    "trial_id", "status", "key", "ratio", "parts", "pooling", "max_pixels", "distill_steps",
    ACCURACY, FLOPS, "flops_fraction", "accuracy_delta", "on_front", "params", "seconds_per_page",
    "mean_output_tokens", "vision_flops", "prefill_flops", "decode_flops_per_token", "cer", "error",
]


def is_scored(row: dict[str, Any]) -> bool:
    """A finished trial with both objectives as finite numbers."""
    values = (row.get(ACCURACY), row.get(FLOPS))
    return row.get("status") == "done" and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``a`` is at least as accurate and as cheap as ``b``, and strictly better in one."""
    at_least = a[ACCURACY] >= b[ACCURACY] and a[FLOPS] <= b[FLOPS]
    return at_least and (a[ACCURACY] > b[ACCURACY] or a[FLOPS] < b[FLOPS])


def pareto_front(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-dominated scored rows, cheapest first."""
    scored = [row for row in rows if is_scored(row)]
    front = [row for row in scored if not any(dominates(other, row) for other in scored)]
    return sorted(front, key=lambda row: (row[FLOPS], -row[ACCURACY]))


def find_baseline(rows: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    return next((row for row in rows if row.get("key") == BASELINE.key and is_scored(row)), None)


def describe(row: dict[str, Any]) -> str:
    pixels = "native" if row.get("max_pixels") in (None, "") else row["max_pixels"]
    compression = "uncompressed" if row.get("ratio") == 1.0 else f"PELA ratio {row['ratio']:g} on {row['parts']}"
    return f"{compression}, pooling {row['pooling']}, max_pixels {pixels}, distill {row['distill_steps']} steps"


def _summary(row: dict[str, Any] | None, baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("trial_id", "key", "ratio", "parts", "pooling", "max_pixels", "distill_steps", ACCURACY, FLOPS, "params",
            "seconds_per_page", "model_dir", "budget_min_pixels", "budget_max_pixels")
    out = {key: row.get(key) for key in keys}
    out["description"] = describe(row)
    if baseline is not None:
        out["flops_fraction"] = row[FLOPS] / baseline[FLOPS] if baseline[FLOPS] else None
        out["accuracy_delta"] = row[ACCURACY] - baseline[ACCURACY]
    return out


def analyse(rows: Sequence[dict[str, Any]], targets: TargetSettings) -> dict[str, Any]:
    """Front, resolved targets, the two named configurations, the winner and a plain-words message."""
    baseline = find_baseline(rows)
    scored = [row for row in rows if is_scored(row)]
    accuracy_min = targets.accuracy_min.resolve(baseline[ACCURACY] if baseline else None) if targets.accuracy_min else None
    flops_max = targets.flops_max.resolve(baseline[FLOPS] if baseline else None) if targets.flops_max else None
    meets_accuracy = [r for r in scored if accuracy_min is not None and r[ACCURACY] >= accuracy_min]
    under_flops = [r for r in scored if flops_max is not None and r[FLOPS] <= flops_max]
    cheapest = min(meets_accuracy, key=lambda r: (r[FLOPS], -r[ACCURACY]), default=None)
    most_accurate = max(under_flops, key=lambda r: (r[ACCURACY], -r[FLOPS]), default=None)
    if accuracy_min is not None and flops_max is not None:
        both = [r for r in meets_accuracy if r[FLOPS] <= flops_max]
        winner = min(both, key=lambda r: (r[FLOPS], -r[ACCURACY]), default=None)
    elif accuracy_min is not None:
        winner = cheapest
    elif flops_max is not None:
        winner = most_accurate
    else:
        winner = max(scored, key=lambda r: (r[ACCURACY], -r[FLOPS]), default=None)

    lines = []
    if baseline is None:
        lines.append("The baseline (uncompressed, unpooled, full resolution) has no result: relative targets cannot be resolved.")
    if targets.accuracy_min is not None:
        goal = f"accuracy >= {_fmt(accuracy_min)} ({targets.accuracy_min.describe()})"
        lines.append(f"Cheapest configuration with {goal}: {_said(cheapest, baseline)}." if cheapest else f"No configuration reaches {goal}.")
    if targets.flops_max is not None:
        goal = f"FLOPs per page <= {_fmt(flops_max)} ({targets.flops_max.describe()})"
        found = f"Most accurate configuration with {goal}: {_said(most_accurate, baseline)}." if most_accurate else None
        lines.append(found or f"No configuration has {goal}.")
    if targets.accuracy_min is not None and targets.flops_max is not None and winner is None:
        lines.append("No configuration meets both targets.")
    counts = {status: sum(1 for r in rows if r.get("status") == status) for status in ("done", "error", "stopped", "unfinished")}
    return {
        "objectives": {ACCURACY: "max", FLOPS: "min"},
        "counts": {"trials": len(rows), **counts},
        "baseline": _summary(baseline, baseline),
        "targets": {
            "accuracy_min": accuracy_min, "accuracy_min_spec": targets.accuracy_min.describe() if targets.accuracy_min else None,
            "flops_max": flops_max, "flops_max_spec": targets.flops_max.describe() if targets.flops_max else None,
        },
        "front": [_summary(row, baseline) for row in pareto_front(rows)],
        "cheapest_meeting_accuracy": _summary(cheapest, baseline),
        "most_accurate_under_flops": _summary(most_accurate, baseline),
        "winner": _summary(winner, baseline),
        "message": " ".join(lines) if lines else "No targets set.",
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _said(row: dict[str, Any] | None, baseline: dict[str, Any] | None) -> str:
    if row is None:
        return "none"
    text = f"{describe(row)} (trial {row.get('trial_id')}): accuracy {row[ACCURACY]:.4f}, {row[FLOPS]:.4g} FLOPs/page"
    if baseline is not None and baseline[FLOPS]:
        text += f" = {row[FLOPS] / baseline[FLOPS]:.1%} of the baseline's (baseline accuracy {baseline[ACCURACY]:.4f})"
    return text


def annotate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``on_front`` and, where the baseline is known, ``flops_fraction`` and ``accuracy_delta``."""
    baseline = find_baseline(rows)
    front = {id(row) for row in pareto_front(rows)}
    out = []
    for row in rows:
        extra: dict[str, Any] = {"on_front": id(row) in front}
        if baseline is not None and is_scored(row):
            extra["flops_fraction"] = row[FLOPS] / baseline[FLOPS] if baseline[FLOPS] else None
            extra["accuracy_delta"] = row[ACCURACY] - baseline[ACCURACY]
        out.append({**row, **extra})
    return out


# --------------------------------------------------------------------------- files
def write_table(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Every trial as one CSV row (nested values as JSON)."""
    keys = list(COLUMNS) + sorted({key for row in rows for key in row} - set(COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(row.get(key)) for key in keys})
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def read_table(path: Path) -> list[dict[str, Any]]:
    """trials.csv back as rows, numbers and booleans parsed (for checks and notebooks)."""
    def parse(value: str) -> Any:
        if value == "":
            return None
        if value in ("True", "False"):
            return value == "True"
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number

    with open(path, newline="", encoding="utf-8") as handle:
        return [{key: parse(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def plot(rows: Sequence[dict[str, Any]], analysis: dict[str, Any], path: Path, title: str = "") -> Path:
    """Accuracy against FLOPs per page: every finished trial, the front, the baseline, the targets, the winner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [row for row in rows if is_scored(row)]
    front = pareto_front(rows)
    figure, axes = plt.subplots(figsize=(8, 5.5))
    axes.scatter([r[FLOPS] for r in scored], [r[ACCURACY] for r in scored], s=28, color="0.6", label="trial", zorder=2)
    if front:
        axes.plot([r[FLOPS] for r in front], [r[ACCURACY] for r in front], "-o", color="tab:red", ms=6, lw=1.5, label="Pareto front", zorder=3)
        for row in front:
            axes.annotate(_short(row), (row[FLOPS], row[ACCURACY]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    baseline = find_baseline(rows)
    if baseline:
        axes.scatter([baseline[FLOPS]], [baseline[ACCURACY]], marker="*", s=220, color="black", label="baseline", zorder=4)
    targets = analysis["targets"]
    if targets["accuracy_min"] is not None:
        axes.axhline(targets["accuracy_min"], ls="--", color="tab:blue", lw=1, label=f"accuracy target ({targets['accuracy_min_spec']})")
    if targets["flops_max"] is not None:
        axes.axvline(targets["flops_max"], ls="--", color="tab:green", lw=1, label=f"FLOP target ({targets['flops_max_spec']})")
    winner = analysis.get("winner")
    if winner:
        axes.scatter(
            [winner[FLOPS]], [winner[ACCURACY]], s=260, facecolors="none", edgecolors="tab:orange", lw=2, label="winner (best.yaml)", zorder=5
        )
    flops = [r[FLOPS] for r in scored]
    if flops and min(flops) > 0 and max(flops) / min(flops) > 20:
        axes.set_xscale("log")
    if baseline and baseline[FLOPS] > 0:
        scale = baseline[FLOPS]
        top = axes.secondary_xaxis("top", functions=(lambda x: x / scale, lambda f: f * scale))
        top.set_xlabel("FLOPs per page / baseline", fontsize=8)
    axes.set_xlabel("FLOPs per page (vision + prefill + decoded tokens)")
    axes.set_ylabel("accuracy")
    axes.set_title(title or "compression sweep")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _short(row: dict[str, Any]) -> str:
    parts = [f"r{row['ratio']:g}" + (f"/{row['parts']}" if row["ratio"] != 1.0 else "")]
    if row["pooling"] != "none":
        parts.append(row["pooling"])
    if row.get("max_pixels") not in (None, ""):
        parts.append(f"{row['max_pixels']}px")
    if row.get("distill_steps"):
        parts.append(f"d{row['distill_steps']}")
    return " ".join(parts)


def best_config(winner: dict[str, Any], settings: TuneSettings) -> dict[str, Any]:
    """The OCR config fragment that serves ``winner`` with the DOTS engine (``--config best.yaml``)."""
    from compression.settings import PoolingConfig

    options: dict[str, Any] = {
        "model": winner["model_dir"],
        "prompt_mode": settings.serve_prompt_mode,
        "min_pixels": int(winner["budget_min_pixels"]),
        "max_pixels": int(winner["budget_max_pixels"]),
        "pooling": PoolingConfig.model_validate(winner["pooling"]).model_dump(mode="json"),
    }
    if settings.dtype != "auto":
        options["dtype"] = settings.dtype
    if settings.trust_remote_code:
        options["trust_remote_code"] = True
    return {"ocr": {"layout": {"engine": "dots", "options": options}}}


def write_best(analysis: dict[str, Any], settings: TuneSettings, path: Path) -> Path | None:
    """Write best.yaml for the winner; without a winner, remove a stale one and return None."""
    winner = analysis.get("winner")
    if winner is None:
        path.unlink(missing_ok=True)
        return None
    header = [
        f"# best configuration of sweep {settings.name}: {winner['description']}",
        f"# accuracy {winner[ACCURACY]:.4f}, {winner[FLOPS]:.4g} FLOPs per page"
        + (f" ({winner['flops_fraction']:.1%} of the baseline's)" if winner.get("flops_fraction") is not None else ""),
        "# serve it: python -m jobs.ocr INPUT --out DIR --config ray_config.yaml --config best.yaml",
    ]
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump(best_config(winner, settings), sort_keys=False))
    return path


def write_outputs(rows: Sequence[dict[str, Any]], settings: TuneSettings, run_dir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """trials.csv, pareto.json, pareto.png and best.yaml in ``run_dir``; returns the analysis."""
    rows = annotate(rows)
    analysis = analyse(rows, settings.targets)
    analysis.update(extra or {})
    write_table(rows, run_dir / "trials.csv")
    (run_dir / "pareto.json").write_text(json.dumps(analysis, indent=2, default=str) + "\n")
    plot(rows, analysis, run_dir / "pareto.png", title=f"sweep {settings.name}")
    best = write_best(analysis, settings, run_dir / "best.yaml")
    analysis["files"] = {name: str(run_dir / name) for name in ("trials.csv", "pareto.json", "pareto.png")}
    if best:
        analysis["files"]["best.yaml"] = str(best)
    return analysis
