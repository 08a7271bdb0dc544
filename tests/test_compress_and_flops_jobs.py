"""``jobs.compress`` (PELA without training: checkpoint, rank table, spectra picture, FLOPs before/after)
and ``jobs.flops`` (one page's FLOPs per phase, measured next to analytic), on the tiny checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jobs import compress as compress_job
from jobs import flops as flops_job


@pytest.fixture(scope="module")
def page_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlm.tiny import text_like_pages

    path = tmp_path_factory.mktemp("page") / "page.png"
    text_like_pages([(560, 448)])[0].save(path)
    return path


@pytest.fixture(scope="module")
def page_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pymupdf

    path = tmp_path_factory.mktemp("pdf") / "letter.pdf"
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=380)
    page.insert_text((30, 60), "Quarterly report: revenue rose 12 % on the year.", fontsize=9)
    doc.save(path)
    doc.close()
    return path


def _phases_agree(report: dict) -> None:
    for phase in ("vision", "prefill", "decode_per_token"):
        assert report[phase]["measured"] > 0
        assert 0.9 < report[phase]["measured"] / report[phase]["analytic"] < 1.1, (phase, report[phase])


def test_flops_job_counts_each_phase_and_the_knobs_move_the_right_ones(tiny_qwen_dir, page_png, tmp_path, capsys):
    common = ["--model", str(tiny_qwen_dir), "--image", str(page_png), "--new-tokens", "2"]
    plain = flops_job.main([*common, "--out", str(tmp_path / "plain.json")])
    table = capsys.readouterr().out
    assert "vision" in table and "prefill" in table and "decode_per_token" in table and "measured" in table
    assert json.loads((tmp_path / "plain.json").read_text())["flops"] == plain["flops"]
    _phases_agree(plain["flops"])

    pooled = flops_job.main([*common, "--pooling", "avg:2"])["flops"]
    _phases_agree(pooled)
    assert pooled["vision"]["measured"] == plain["flops"]["vision"]["measured"]  # pooling acts after the tower
    assert pooled["visual_tokens"] < plain["flops"]["visual_tokens"]
    assert pooled["prefill"]["measured"] < plain["flops"]["prefill"]["measured"]

    smaller = flops_job.main([*common, "--max-pixels", str(28 * 28 * 4)])["flops"]
    assert smaller["patches"] < plain["flops"]["patches"]
    assert smaller["vision"]["measured"] < plain["flops"]["vision"]["measured"]


def test_flops_job_reads_a_pdf_page_and_names_bad_input(tiny_qwen_dir, page_pdf, tmp_path, capsys):
    result = flops_job.main(["--model", str(tiny_qwen_dir), "--image", str(page_pdf), "--dpi", "100", "--new-tokens", "1"])
    assert result["image"]["size"] == [round(300 * 100 / 72), round(380 * 100 / 72)]
    _phases_agree(result["flops"])
    capsys.readouterr()

    for argv, named in (
        (["--image", str(tmp_path / "missing.png")], "missing.png does not exist"),
        (["--image", str(page_pdf), "--page", "3"], "letter.pdf"),
        (["--image", str(page_pdf), "--pooling", "mean:2"], "--pooling 'mean:2'"),
    ):
        with pytest.raises(SystemExit) as stopped:
            flops_job.main(["--model", str(tiny_qwen_dir), *argv])
        assert stopped.value.code == 2
        assert named in capsys.readouterr().err


def test_compress_job_writes_a_servable_checkpoint_its_rank_table_spectra_and_flops(tiny_qwen_dir, page_png, tmp_path, capsys):
    from PIL import Image

    from compression.persistence import read_ranks
    from engines.generative.generation import Request, TransformersGenerator
    from vlm.loading import ModelSource, load_model_and_processor

    out = tmp_path / "r2"
    summary = compress_job.main([str(tiny_qwen_dir), "--ratio", "2", "--max-rank", "12", "--out", str(out),
                                 "--image", str(page_png), "--new-tokens", "1"])
    printed = capsys.readouterr().out
    assert "layers factored" in printed and "before measured" in printed

    ranks = read_ranks(out)["ranks"]
    assert ranks and max(ranks.values()) <= 12
    table = json.loads((out / "compression.json").read_text())
    assert {layer["name"]: layer["rank"] for layer in table["layers"]} == ranks
    assert json.loads((out / "summary.json").read_text())["after"] == summary["after"]
    assert summary["after"]["params"] < summary["before"]["params"]
    assert summary["after"]["disk_bytes"] < summary["before"]["disk_bytes"]
    before, after = summary["flops"]["before"], summary["flops"]["after"]
    for phase in ("vision", "prefill", "decode_per_token"):  # both towers were factored
        assert after[phase]["measured"] < before[phase]["measured"], phase
    _phases_agree(after)
    with Image.open(out / "singular_values.png") as picture:
        assert picture.format == "PNG" and picture.width > 400 and picture.height > 300

    # energy kept is what the singular values of the original weight say
    original, _ = load_model_and_processor(ModelSource(model=str(tiny_qwen_dir), device_map=None))
    layer = table["layers"][0]
    values = torch.linalg.svdvals(original.get_submodule(layer["name"]).weight.detach().float()).double()
    expected = float(values[: layer["rank"]].square().sum() / values.square().sum())
    assert layer["energy_kept"] == pytest.approx(expected, rel=1e-4)

    model, processor = load_model_and_processor(ModelSource(model=str(out), device_map=None), role="layout")
    with Image.open(page_png) as image:
        generated = TransformersGenerator(model, processor, batch_size=1).generate([Request(image=image.convert("RGB"), prompt="Read.")], 3)
    assert generated[0].new_tokens > 0


def test_compress_job_refuses_bad_settings_and_a_full_folder(tiny_qwen_dir, tmp_path, capsys):
    for argv, message in (
        (["--ratio", "2", "--min-rank", "5", "--max-rank", "3"], "max_rank 3 is below min_rank 5"),
        (["--ratio", "0.5"], "ratio"),
        (["--ratio", "2", "--calibration", "asvd"], "--calibration asvd needs --calibration-data"),
        (["--ratio", "2", "--target", "no_such_module.*"], str(tiny_qwen_dir)),
    ):
        with pytest.raises(SystemExit) as stopped:
            compress_job.main([str(tiny_qwen_dir), "--out", str(tmp_path / "out"), *argv])
        assert stopped.value.code == 2
        assert message in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        compress_job.main([str(tiny_qwen_dir), "--ratio", "2", "--out", str(tmp_path / "full")])
    assert "already holds files" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
