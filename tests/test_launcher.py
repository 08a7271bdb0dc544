"""The launcher every job shares: config precedence and where a job runs (no Ray started here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from configuration.schema import ClusterConfig
from jobs import distill, finetune_lora, ocr, sweep, train_reference
from launch.launcher import RAY_JOB_ENV_VAR, describe_sources, load_job_config, placement


@pytest.fixture(autouse=True)
def _no_ray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_ADDRESS", RAY_JOB_ENV_VAR):
        monkeypatch.delenv(name, raising=False)


def _ocr_config(*argv: str, config_file: Path | None = None):
    args = ocr.build_parser().parse_args(["in.pdf", "--out", "o", *(["--config", str(config_file)] if config_file else []), *argv])
    return args, load_job_config(args, ocr.SHORTCUTS)


def test_set_wins_over_shortcut_flags_which_win_over_config_files(tmp_path: Path) -> None:
    config_file = tmp_path / "c.yaml"
    config_file.write_text("ocr:\n  render:\n    dpi: 100\ncluster:\n  address: local\n")
    _, from_file = _ocr_config(config_file=config_file)
    assert from_file.ocr.render.dpi == 100 and from_file.cluster.address == "local"
    _, flag = _ocr_config("--dpi", "200", "--address", "http://h:8265", config_file=config_file)
    assert flag.ocr.render.dpi == 200 and flag.cluster.address == "http://h:8265"
    # --set is applied last, whatever order the options were typed in
    _, both = _ocr_config("--set", "ocr.render.dpi=300", "--dpi", "200", "--set", "cluster.address=auto", "--address", "local",
                          config_file=config_file)
    assert both.ocr.render.dpi == 300 and both.cluster.address == "auto"


def test_printed_config_header_shows_the_order_and_each_source(tmp_path: Path) -> None:
    args, _ = _ocr_config("--dpi", "200", "--set", "ocr.render.dpi=300")
    header = describe_sources(args, ocr.SHORTCUTS)
    assert "config files < shortcut flags < --set" in header
    assert 'ocr.render.dpi=200' in header and "ocr.render.dpi=300" in header


def test_store_flags_become_overrides_only_when_given() -> None:
    args, config = _ocr_config("--no-markdown", "--combined", "--pages", "1-3")
    assert config.ocr.output.markdown is False and config.ocr.output.combined is True and config.ocr.inputs.pages == "1-3"
    _, default = _ocr_config()
    assert default.ocr.output.markdown is True and default.ocr.output.combined is False


@pytest.mark.parametrize(
    ("module", "argv", "key", "expected"),
    [
        (train_reference, ["--out", "o", "--workers", "3", "--set", "train.scaling.num_workers=5"], "train.scaling.num_workers", 5),
        (distill, ["--out", "o", "--teacher", "t", "--data", "d", "--ratio", "3"], "train.distill.ratio", 3.0),
        (finetune_lora, ["--out", "o", "--base", "b", "--data", "d", "--preset", "minimal", "--gpu"], "train.lora.preset", "minimal"),
        (sweep, ["--name", "a", "--set", "tune.name=b"], "tune.name", "b"),
        (sweep, ["--concurrency", "3"], "tune.max_concurrent_trials", 3),
    ],
)
def test_every_job_uses_the_same_precedence(module, argv, key, expected) -> None:
    config = load_job_config(module.build_parser().parse_args(argv), module.SHORTCUTS)
    value = config
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    assert value == expected


def test_placement_submits_to_a_job_server_joins_a_cluster_or_starts_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    assert placement(ClusterConfig()).kind == "local"
    assert placement(ClusterConfig(address="local")).kind == "local"
    assert placement(ClusterConfig(address="http://h:8265")) .kind == "submit"
    assert placement(ClusterConfig(address="ray://h:10001")).kind == "join"
    monkeypatch.setenv("RAY_ADDRESS", "http://h:8265")  # what `ray job submit` users export
    assert placement(ClusterConfig()).kind == "submit"
    assert placement(ClusterConfig(address="local")).kind == "local"


@pytest.mark.parametrize("address", ["http://h:8265", "auto", "local", "ray://h:10001"])
def test_a_process_running_as_a_ray_job_joins_its_cluster_whatever_the_address(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    monkeypatch.setenv(RAY_JOB_ENV_VAR, json.dumps({"runtime_env": {}, "metadata": {"job_submission_id": "raysubmit_1"}}))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # the job supervisor sets the cluster's GCS address
    where = placement(ClusterConfig(address=address))
    assert (where.kind, where.address) == ("join", "127.0.0.1:6379")
