"""Evaluation: metrics by hand, greedy OCR batching, likelihood multiple choice, the CLI end to end."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest

from training.data.records import Record
from training.metrics import OcrScores, character_error_rate, exact_match, normalize_text

# ----------------------------------------------------------------------------- metrics


def test_cer_kitten_sitting() -> None:
    # kitten -> sitting: substitute k/s, substitute e/i, insert g = 3 edits over 7 reference characters.
    assert character_error_rate(["kitten"], ["sitting"]) == pytest.approx(3 / 7)
    assert character_error_rate(["sitting"], ["sitting"]) == 0.0


def test_cer_is_corpus_level_not_a_mean_of_pages() -> None:
    predictions, references = ["kitten", "abc"], ["sitting", "abd"]
    assert character_error_rate(predictions, references) == pytest.approx((3 + 1) / (7 + 3))
    mean_of_pages = (3 / 7 + 1 / 3) / 2
    assert character_error_rate(predictions, references) != pytest.approx(mean_of_pages)


def test_normalisation_ignores_whitespace_layout_only() -> None:
    prediction, reference = "  hello \n\t world  ", "hello world"
    assert normalize_text(prediction) == reference
    assert character_error_rate([prediction], [reference]) > 0
    assert character_error_rate([prediction], [reference], normalize=True) == 0.0
    assert exact_match([prediction], [reference]) == 0.0
    assert exact_match([prediction], [reference], normalize=True) == 1.0
    assert character_error_rate(["helloworld"], [reference], normalize=True) == pytest.approx(1 / 11)


def test_exact_match_share_and_edge_cases() -> None:
    assert exact_match(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 0.5
    assert exact_match([], []) == 0.0
    assert character_error_rate([""], [""]) == 0.0
    assert character_error_rate(["junk"], [""]) == 1.0  # no denominator, but output where none was expected
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        character_error_rate(["a", "b"], ["a"])


def test_ocr_scores_clip_char_accuracy_at_zero() -> None:
    scores = OcrScores.compute(["aaaaaa", "b"], ["a", "b"])
    assert scores.cer == pytest.approx(5 / 2)
    assert scores.char_accuracy == 0.0
    assert scores.exact_match == 0.5
    assert scores.count == 2
    good = OcrScores.compute(["kitten"], ["sitting"])
    assert good.char_accuracy == pytest.approx(1 - 3 / 7)
    assert set(good.to_dict()) == {"cer", "char_accuracy", "exact_match", "count"}


# ----------------------------------------------------------------------------- model helpers


def _load(path: Path):
    from vlm.loading import ModelSource, load_model_and_processor

    return load_model_and_processor(ModelSource(model=str(path), device_map=None, dtype="float32"))


@pytest.fixture(scope="module")
def tiny(tiny_qwen_dir: Path):
    return _load(tiny_qwen_dir)


@pytest.fixture(scope="module")
def pages():
    """Pages of different sizes, so batches mix image token counts and need padding."""
    from vlm.tiny import text_like_pages

    return text_like_pages([(56, 112), (84, 84), (56, 56), (112, 56)], seed=1)


def test_predict_texts_same_for_any_batch_size_and_in_order(tiny, pages) -> None:
    from training.evaluate import predict_texts

    model, processor = tiny
    records = [Record(image=page, text="") for page in pages]
    records[2].question = "What does it say?"  # a question replaces the default prompt for that record
    model.train()
    alone = predict_texts(model, processor, records, batch_size=1, max_new_tokens=6)
    assert not model.training
    batched = predict_texts(model, processor, records, batch_size=3, max_new_tokens=6)
    reversed_batch = predict_texts(model, processor, records[::-1], batch_size=4, max_new_tokens=6)
    assert len(alone) == len(records)
    assert all(isinstance(text, str) for text in alone)
    assert batched == alone
    assert reversed_batch == alone[::-1]


def _brute_force_log_likelihood(model, processor, record: Record, choice: str) -> tuple[float, int]:
    """Summed answer log-prob of one pair through the model's own loss: no batching, no padding, no slicing."""
    import torch

    from training.examples import IGNORE_INDEX, Example, encode_batch, record_prompt

    batch = encode_batch(processor, [Example(record.image, prompt=record_prompt(record.question, record.choices), target=choice)])
    count = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the loss shifts labels by one
    with torch.inference_mode():
        loss = model(**batch).loss.item()  # mean negative log-likelihood over the answer tokens
    return -loss * count, count


def test_score_choices_matches_brute_force_per_pair_loss(tiny, pages) -> None:
    from training.evaluate import choice_log_likelihoods, score_choices

    model, processor = tiny
    records = [
        Record(image=pages[0], text="", question="Which word?", choices=["cat", "x", "a longer choice", "42"], answer=0),
        Record(image=pages[1], text="", question="Pick one.", choices=["yes", "no"], answer=1),
        Record(image=pages[3], text="", question="Total?", choices=["12.50", "7", "1000"], answer=2),
    ]
    expected = [[_brute_force_log_likelihood(model, processor, r, c) for c in r.choices] for r in records]
    summed = choice_log_likelihoods(model, processor, records, batch_size=3, normalize=False)
    mean = choice_log_likelihoods(model, processor, records, batch_size=3, normalize=True)
    for row, sums, means in zip(expected, summed, mean):
        assert sums == pytest.approx([total for total, _ in row], abs=1e-3)
        assert means == pytest.approx([total / count for total, count in row], abs=1e-4)

    def argmax(values: list[float]) -> int:
        return max(range(len(values)), key=values.__getitem__)

    assert score_choices(model, processor, records, batch_size=3, normalize=False) == [
        argmax([t for t, _ in row]) for row in expected
    ]
    assert score_choices(model, processor, records, batch_size=5) == [argmax([t / n for t, n in row]) for row in expected]


def test_greedy_continuation_beats_random_strings(tiny_qwen_dir: Path, pages) -> None:
    """What the model generates greedily must be its likeliest answer among same-length strings.

    The random model's next-token distribution is almost flat, so its logits are scaled
    up (same ranking, sharper) to make the margin clear; generation is limited to
    alphanumeric tokens so the greedy text decodes and re-encodes to the same tokens.
    """
    import torch

    from training.evaluate import predict_texts, score_choices

    model, processor = _load(tiny_qwen_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    tokenizer = processor.tokenizer
    alphabet = string.ascii_letters + string.digits
    allowed = set(tokenizer.convert_tokens_to_ids(list(alphabet)))
    model.generation_config.suppress_tokens = [i for i in range(len(tokenizer)) if i not in allowed]

    records = [Record(image=page, text="", question="Read it.") for page in pages[:2]]
    greedy = predict_texts(model, processor, records, max_new_tokens=6)
    rng = random.Random(0)
    gold = []
    for record, text in zip(records, greedy):
        assert len(text) == 6 and tokenizer.decode(tokenizer(text)["input_ids"]) == text
        choices = ["".join(rng.choice(alphabet) for _ in text) for _ in range(5)]
        gold.append(rng.randrange(len(choices) + 1))
        choices.insert(gold[-1], text)
        record.choices = choices
    assert score_choices(model, processor, records, batch_size=4, normalize=False) == gold
    assert score_choices(model, processor, records, batch_size=4, normalize=True) == gold


def test_evaluate_records_sections_and_samples(tiny, pages) -> None:
    from training.evaluate import evaluate_records, predict_texts, score_choices

    model, processor = tiny
    ocr = [Record(image=page, text=f"line {i}") for i, page in enumerate(pages[:3])]
    mc = [
        Record(image=pages[0], text="b", question="Which?", choices=["a", "b"]),  # gold from the text
        Record(image=pages[1], text="", question="Which?", choices=["one", "two", "three"], answer=2),
    ]
    results = evaluate_records(model, processor, [mc[0], *ocr, mc[1]], max_new_tokens=4, num_samples=3)
    predictions = predict_texts(model, processor, ocr, max_new_tokens=4)
    chosen = score_choices(model, processor, mc)
    assert results["ocr"] == OcrScores.compute(predictions, [r.text for r in ocr], normalize=True).to_dict()
    assert results["multiple_choice"] == {"accuracy": sum([chosen[0] == 1, chosen[1] == 2]) / 2, "count": 2}
    assert results["samples"][0] == {"prediction": mc[0].choices[chosen[0]], "reference": "b"}
    assert results["samples"][1:] == [{"prediction": p, "reference": r.text} for p, r in zip(predictions[:2], ocr)]
    json.dumps(results)  # JSON-ready

    only_ocr = evaluate_records(model, processor, ocr[:1], max_new_tokens=4)
    assert set(only_ocr) == {"ocr", "samples"}


def test_open_answers_name_an_option_by_its_text_or_its_label() -> None:
    from training.evaluate import open_answer_choice

    choices = ["red car", "Blue Bus", "12.50"]
    assert open_answer_choice("blue  bus", choices) == 1
    assert open_answer_choice(" 12.50 ", choices) == 2
    assert [open_answer_choice(label, choices) for label in ("A", "b.", "(C)", "c:")] == [0, 1, 2, 2]
    assert open_answer_choice("D", choices) == -1 and open_answer_choice("a red car", choices) == -1


def test_the_prompt_shows_the_options_in_training_and_in_evaluation() -> None:
    from training.batches import to_example
    from training.evaluate import _prompt_for

    record = Record(image=None, text="", question="What is shown?", choices=["a cat", "a dog"], answer=1)
    prompt = to_example(record, "Read the text.").prompt
    assert prompt.splitlines()[:3] == ["What is shown?", "A. a cat", "B. a dog"]
    assert to_example(record, "Read the text.").target == "a dog"
    assert _prompt_for(record, None) == prompt  # likelihood and open-answer scoring ask the same
    assert to_example(Record(image=None, text="x"), "Read the text.").prompt == "Read the text."


def test_evaluate_records_modes_score_multiple_choice_by_likelihood_by_open_answer_or_both(tiny, pages) -> None:
    from training.evaluate import evaluate_records, open_answer_choice, predict_texts, score_choices

    model, processor = tiny
    mc = [
        Record(image=pages[0], text="", question="Which?", choices=["a", "b"], answer=1),
        Record(image=pages[1], text="", question="Which?", choices=["one", "two", "three"], answer=2),
    ]
    both = evaluate_records(model, processor, mc, max_new_tokens=4, mode="both")
    answers = predict_texts(model, processor, mc, max_new_tokens=4)
    named = [open_answer_choice(a, r.choices) for a, r in zip(answers, mc)]
    assert both["open_answer"] == {
        "accuracy": sum([named[0] == 1, named[1] == 2]) / 2, "no_option_named": sum(n < 0 for n in named) / 2, "count": 2,
    }
    chosen = score_choices(model, processor, mc)
    assert both["multiple_choice"] == {"accuracy": sum([chosen[0] == 1, chosen[1] == 2]) / 2, "count": 2}
    assert set(evaluate_records(model, processor, mc, max_new_tokens=4, mode="open")) == {"open_answer", "samples"}
    assert set(evaluate_records(model, processor, mc, max_new_tokens=4)) == {"multiple_choice", "samples"}


# ----------------------------------------------------------------------------- CLI


def _write_parquet(path: Path, rows: dict[str, list]) -> Path:
    import datasets

    features = {"image": datasets.Image(), "text": datasets.Value("string")}
    if "choices" in rows:
        features.update(
            question=datasets.Value("string"), choices=datasets.Sequence(datasets.Value("string")), answer=datasets.Value("int64")
        )
    datasets.Dataset.from_dict(rows, features=datasets.Features(features)).to_parquet(str(path))
    return path


def test_cli_writes_flat_metrics_for_ocr_parquet(tiny_qwen_dir: Path, pages, tmp_path: Path, capsys) -> None:
    from jobs.evaluate import main

    data = _write_parquet(tmp_path / "test.parquet", {"image": pages[:3], "text": ["hello world", "total 12.50", "x"]})
    out = tmp_path / "results" / "eval.json"
    results = main(["--model", str(tiny_qwen_dir), "--data", str(data), "--limit", "2", "--max-new-tokens", "4",
                    "--batch-size", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    metrics = results["metrics"]
    assert {"cer", "char_accuracy", "exact_match", "seconds", "pages_per_s"} <= set(metrics)
    assert "mc_accuracy" not in metrics and "multiple_choice" not in results
    assert results["data"]["records"] == results["ocr"]["count"] == 2
    assert results["model"]["path"] == str(tiny_qwen_dir) and results["model"]["dtype"] == "float32"
    samples = results["samples"]
    assert [s["reference"] for s in samples] == ["hello world", "total 12.50"]
    assert metrics["cer"] == pytest.approx(
        character_error_rate([s["prediction"] for s in samples], [s["reference"] for s in samples], normalize=True)
    )
    assert metrics["pages_per_s"] > 0
    assert "CER" in capsys.readouterr().out


def test_cli_multiple_choice_columns(tiny_qwen_dir: Path, pages, tmp_path: Path) -> None:
    from jobs.evaluate import main

    rows = {"image": pages[:2], "text": ["b", "three"], "question": ["Which?", "Count?"],
            "choices": [["a", "b"], ["one", "two", "three"]], "answer": [1, 2]}
    data = _write_parquet(tmp_path / "mc.parquet", rows)
    results = main(["--model", str(tiny_qwen_dir), "--data", str(data), "--column", "question=question",
                    "--column", "choices=choices", "--column", "answer=answer"])
    assert results["multiple_choice"]["count"] == 2
    assert set(results["metrics"]) == {"mc_accuracy", "seconds", "pages_per_s"}
    assert results["metrics"]["mc_accuracy"] == results["multiple_choice"]["accuracy"]


def test_cli_mode_both_and_max_pixels(tiny_qwen_dir: Path, pages, tmp_path: Path, capsys) -> None:
    from jobs.evaluate import main

    rows = {"image": pages[:2], "text": ["b", "three"], "question": ["Which?", "Count?"],
            "choices": [["a", "b"], ["one", "two", "three"]], "answer": [1, 2]}
    data = _write_parquet(tmp_path / "mc.parquet", rows)
    columns = ["--column", "question=question", "--column", "choices=choices", "--column", "answer=answer"]
    results = main(["--model", str(tiny_qwen_dir), "--data", str(data), *columns, "--mode", "both",
                    "--max-pixels", str(28 * 28 * 4), "--max-new-tokens", "3"])
    assert set(results["metrics"]) == {"mc_accuracy", "mc_open_accuracy", "seconds", "pages_per_s"}
    assert results["open_answer"]["count"] == results["multiple_choice"]["count"] == 2
    assert results["settings"]["mode"] == "both" and results["settings"]["pixel_budget"]["max_pixels"] == 28 * 28 * 4
    assert "open-answer accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tiny_qwen_dir), "--data", str(data), *columns, "--max-pixels", "100"])
    assert exit_info.value.code == 2 and "--max-pixels 100" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["model", "data"])
def test_cli_missing_path_exits_2_naming_it(missing: str, tiny_qwen_dir: Path, pages, tmp_path: Path, capsys) -> None:
    from jobs.evaluate import main

    paths = {"model": str(tiny_qwen_dir), "data": str(_write_parquet(tmp_path / "d.parquet", {"image": pages[:1], "text": ["a"]}))}
    paths[missing] = str(tmp_path / "nowhere" / missing)
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", paths["model"], "--data", paths["data"]])
    assert exit_info.value.code == 2
    assert paths[missing] in capsys.readouterr().err
