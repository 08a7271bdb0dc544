"""Evaluate a vision-language model on records: OCR by greedy generation, multiple choice by likelihood.

Plain PyTorch/transformers, no Ray, so the same code scores a model in a unit test, in the
evaluation job and inside a training or tuning worker. Prompts come from
``training.examples`` so the model is asked exactly what it was trained on.

Multiple choice is scored by likelihood rather than by generating and parsing an answer:
a small or half-trained model rarely writes a choice verbatim, yet its likelihoods still
rank the choices, and the score does not depend on a parser.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable, Literal, Sequence

from training.data.records import Record
from training.examples import DEFAULT_OCR_PROMPT, IGNORE_INDEX, Example, choice_label, encode_batch, record_prompt
from training.metrics import OcrScores


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _prompt_for(record: Record, prompt: str | None) -> str:
    return record_prompt(record.question, record.choices, prompt or DEFAULT_OCR_PROMPT)


def _to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {key: value.to(device) if hasattr(value, "to") else value for key, value in batch.items()}


def _end_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """EOS ids from the generation config (one id or a list) and the tokenizer."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ends = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ends.add(tokenizer.eos_token_id)
    return ends


def predict_texts(
    model: Any,
    processor: Any,
    records: Sequence[Record],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 64,
    prompt: str | None = None,
) -> list[str]:
    """Greedy transcriptions, one per record in order.

    Batches are left padded so every row's answer starts in the same column; only the
    new tokens up to the first end token are decoded, without special tokens.
    """
    import torch

    model.eval()
    tokenizer = processor.tokenizer
    ends = _end_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(ends, default=0)
    texts: list[str] = []
    with torch.inference_mode():
        for chunk in _chunks(records, batch_size):
            examples = [Example(record.image, prompt=_prompt_for(record, prompt)) for record in chunk]
            batch = _to_device(encode_batch(processor, examples, padding_side="left"), model.device)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id)
            for row in output[:, batch["input_ids"].shape[1] :].tolist():
                end = next((i for i, token in enumerate(row) if token in ends), len(row))
                texts.append(tokenizer.decode(row[:end], skip_special_tokens=True))
    return texts


def _accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def answer_log_likelihoods(model: Any, batch: dict[str, Any], *, normalize: bool = True) -> list[float]:
    """Per-row log-probability of the labelled (answer) tokens of an ``encode_batch`` output.

    The batch must be left padded: then every answer ends in the last column, and only the
    last ``longest answer + 1`` positions need logits, which keeps a large vocabulary's
    logits for long image prompts out of memory. ``normalize`` divides by the row's
    answer token count (mean log-prob per token), so longer choices are not penalised
    merely for being longer.
    """
    import torch

    labels = batch["labels"]
    answer_lengths = (labels != IGNORE_INDEX).sum(dim=1)
    keep = int(answer_lengths.max().item()) + 1
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    if _accepts_logits_to_keep(model):
        inputs["logits_to_keep"] = keep
    logits = model(**inputs).logits[:, -keep:]  # sliced again: a model may ignore logits_to_keep
    targets = labels[:, -keep:][:, 1:].to(logits.device)  # logit at position p predicts token p + 1
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    mask = targets != IGNORE_INDEX
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    totals = (picked * mask).sum(dim=1)
    if normalize:
        totals = totals / mask.sum(dim=1).clamp(min=1)
    return totals.tolist()


def choice_log_likelihoods(
    model: Any,
    processor: Any,
    records: Sequence[Record],
    *,
    batch_size: int = 8,
    normalize: bool = True,
    prompt: str | None = None,
) -> list[list[float]]:
    """For each record, the log-likelihood of each choice as the model's whole answer.

    The answer tokens include the end-of-turn token (``encode_batch`` labels it), so a
    choice that is a prefix of a likelier string is not rewarded for stopping early.
    All (record, choice) pairs are batched together, whatever record they belong to.
    """
    import torch

    model.eval()
    pairs = [
        (index, Example(record.image, prompt=_prompt_for(record, prompt), target=choice))
        for index, record in enumerate(records)
        for choice in record.choices or []
    ]
    scores: list[list[float]] = [[] for _ in records]
    with torch.inference_mode():
        for chunk in _chunks(pairs, batch_size):
            batch = encode_batch(processor, [example for _, example in chunk], padding_side="left")
            values = answer_log_likelihoods(model, _to_device(batch, model.device), normalize=normalize)
            for (index, _), value in zip(chunk, values):
                scores[index].append(value)
    return scores


def score_choices(
    model: Any,
    processor: Any,
    records: Sequence[Record],
    *,
    batch_size: int = 8,
    normalize: bool = True,
    prompt: str | None = None,
) -> list[int]:
    """The index of the likeliest choice per record (first one on ties)."""
    scores = choice_log_likelihoods(model, processor, records, batch_size=batch_size, normalize=normalize, prompt=prompt)
    return [max(range(len(row)), key=row.__getitem__) if row else -1 for row in scores]


def gold_choice(record: Record) -> int:
    """The answer index, or the position of ``text`` among the choices when no index is given."""
    choices = record.choices or []
    if record.answer is not None:
        if not 0 <= record.answer < len(choices):
            raise ValueError(f"answer {record.answer} out of range for {len(choices)} choices (record {record.meta})")
        return record.answer
    if record.text in choices:
        return choices.index(record.text)
    raise ValueError(f"multiple-choice record has no answer index and its text is not a choice (record {record.meta})")


def open_answer_choice(prediction: str, choices: Sequence[str]) -> int:
    """The option a free-text answer names: its text (case and spacing ignored) or its label (``B``, ``B.``, ``(B)``); -1 if none."""
    said = " ".join(prediction.split()).casefold()
    for index, choice in enumerate(choices):
        if said == " ".join(choice.split()).casefold():
            return index
    label = said.strip("().: ").upper()
    for index in range(len(choices)):
        if label == choice_label(index, len(choices)):
            return index
    return -1


MultipleChoiceMode = Literal["mcq", "open", "both"]


def evaluate_records(
    model: Any,
    processor: Any,
    records: Sequence[Record],
    *,
    batch_size: int = 16,
    choice_batch_size: int = 8,
    max_new_tokens: int = 64,
    prompt: str | None = None,
    normalize_text: bool = True,
    normalize_choices: bool = True,
    num_samples: int = 5,
    mode: MultipleChoiceMode = "mcq",
) -> dict[str, Any]:
    """JSON-ready scores: an ``ocr`` section, multiple-choice sections, and a few samples.

    Multiple-choice rows are scored per ``mode``: ``mcq`` ranks the options by likelihood
    (``multiple_choice``), ``open`` lets the model write its answer and checks which option
    it names (``open_answer``: ``open_answer_choice``), ``both`` does both. Sections with
    no records are left out. ``normalize_text`` makes CER and exact match ignore whitespace
    layout; ``normalize_choices`` is ``score_choices``' ``normalize``.
    """
    records = list(records)
    ocr = [i for i, record in enumerate(records) if not record.is_multiple_choice]
    mc = [i for i, record in enumerate(records) if record.is_multiple_choice]
    shown: dict[int, dict[str, str]] = {}
    results: dict[str, Any] = {}
    if ocr:
        references = [records[i].text for i in ocr]
        predictions = predict_texts(
            model, processor, [records[i] for i in ocr], batch_size=batch_size, max_new_tokens=max_new_tokens, prompt=prompt
        )
        results["ocr"] = OcrScores.compute(predictions, references, normalize=normalize_text).to_dict()
        shown.update({i: {"prediction": p, "reference": r} for i, p, r in zip(ocr, predictions, references)})
    mc_records = [records[i] for i in mc]
    gold = [gold_choice(record) for record in mc_records]
    if mc and mode in ("open", "both"):
        answers = predict_texts(model, processor, mc_records, batch_size=batch_size, max_new_tokens=max_new_tokens, prompt=prompt)
        named = [open_answer_choice(answer, record.choices or []) for answer, record in zip(answers, mc_records)]
        results["open_answer"] = {
            "accuracy": sum(n == g for n, g in zip(named, gold)) / len(mc),
            "no_option_named": sum(n < 0 for n in named) / len(mc),
            "count": len(mc),
        }
        shown.update({i: {"prediction": a, "reference": r.choices[g]} for i, a, r, g in zip(mc, answers, mc_records, gold)})  # type: ignore[index]
    if mc and mode in ("mcq", "both"):
        chosen = score_choices(
            model, processor, mc_records, batch_size=choice_batch_size, normalize=normalize_choices, prompt=prompt
        )
        correct = sum(c == g for c, g in zip(chosen, gold))
        results["multiple_choice"] = {"accuracy": correct / len(mc), "count": len(mc)}
        shown.update(
            {
                i: {"prediction": record.choices[c], "reference": record.choices[g]}  # type: ignore[index]
                for i, record, c, g in zip(mc, mc_records, chosen, gold)
            }
        )
    results["samples"] = [shown[i] for i in sorted(shown)[:num_samples]]
    return results
