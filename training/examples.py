"""Turn (image, prompt, target) triples into model inputs with masked labels.

One place decides what an OCR training example looks like, so that training, distillation,
fine-tuning and evaluation all feed the model the same chat-formatted prompt: a user turn
with the image and an instruction, and an assistant turn with the target text. Only the
target tokens (and the end-of-turn token) carry a loss; prompt, image and padding tokens
are labelled ``-100``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

IGNORE_INDEX = -100

#: The instruction used for plain OCR examples (no question in the data). Short on purpose: with a
#: byte-level tokenizer every character is a token, and a long fixed prompt would be most of a line's sequence.
DEFAULT_OCR_PROMPT = "Read the text."


#: How a multiple-choice item's options are shown in its prompt; the model answers with the option's text.
CHOICES_INSTRUCTION = "Answer with the text of the correct option."


def choice_label(index: int, count: int) -> str:
    """``A``, ``B``, ... (numbers ``1``, ``2``, ... past 26 options)."""
    return chr(ord("A") + index) if count <= 26 else str(index + 1)


def record_prompt(question: str | None, choices: Sequence[str] | None, default: str = DEFAULT_OCR_PROMPT) -> str:
    """The user text of an item: its question (or ``default``), followed by its options when it has any.

    Training, likelihood scoring and open-answer evaluation all ask with this prompt, so a
    model fine-tuned on multiple-choice rows is evaluated on the question it learned,
    options included (``A. ...`` one per line, then ``CHOICES_INSTRUCTION``).
    """
    text = question or default
    if not choices:
        return text
    options = "\n".join(f"{choice_label(i, len(choices))}. {choice}" for i, choice in enumerate(choices))
    return f"{text}\n{options}\n{CHOICES_INSTRUCTION}"


@dataclass(frozen=True)
class Example:
    """One training or evaluation item; ``target`` is None when only the prompt is encoded."""

    image: Any  # PIL.Image.Image
    prompt: str = DEFAULT_OCR_PROMPT
    target: str | None = None


def chat_messages(prompt: str, target: str | None = None) -> list[dict[str, Any]]:
    """The chat turns for one example, in the processor's chat-template format."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}
    ]
    if target is not None:
        messages.append({"role": "assistant", "content": target})
    return messages


def prompt_text(processor: Any, prompt: str) -> str:
    """The templated prompt that ends where the model's answer begins."""
    return processor.apply_chat_template(chat_messages(prompt), tokenize=False, add_generation_prompt=True)


def full_text(processor: Any, prompt: str, target: str) -> str:
    """The templated prompt followed by the answer and its end-of-turn token.

    Most chat templates close the answer themselves (``<|im_end|>``, ``<end_of_turn>``);
    one that leaves the last turn open (dots.ocr's) names its token on the processor as
    ``end_of_turn_token``, which is appended, so the model learns where to stop.
    """
    text = processor.apply_chat_template(chat_messages(prompt, target), tokenize=False).rstrip("\n")
    end = getattr(processor, "end_of_turn_token", None)
    return text + end if end and not text.endswith(end) else text


def encode_batch(processor: Any, examples: Sequence[Example], *, padding_side: str = "right") -> dict[str, Any]:
    """Processor outputs for a batch, plus ``labels`` when every example has a target.

    Labels are the input ids with everything but the answer masked. The answer starts
    after the templated prompt, whose token length is measured by encoding it with the
    same image, so image placeholder expansion is accounted for.
    """
    images = [example.image.convert("RGB") for example in examples]
    with_targets = all(example.target is not None for example in examples)
    if with_targets:
        texts = [full_text(processor, e.prompt, e.target) for e in examples]  # type: ignore[arg-type]
    else:
        texts = [prompt_text(processor, e.prompt) for e in examples]
    tokenizer = processor.tokenizer
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = padding_side
    try:
        batch = dict(processor(text=texts, images=images, padding=True, return_tensors="pt"))
    finally:
        tokenizer.padding_side = previous_side
    # keep every processor output: Qwen2.5-VL needs ``mm_token_type_ids`` to build its 3-D (M-RoPE)
    # positions; without it the image tokens get plain 1-D positions and padding shifts them.
    if with_targets:
        batch["labels"] = _answer_labels(processor, examples, images, batch, padding_side)
    return batch


def _answer_labels(processor: Any, examples: Sequence[Example], images: list[Any], batch: dict[str, Any], padding_side: str) -> Any:
    import torch

    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    prompts = [prompt_text(processor, e.prompt) for e in examples]
    prompt_ids = processor(text=prompts, images=images, padding=False)["input_ids"]
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    width = batch["input_ids"].shape[1]
    for row, (prompt, length) in enumerate(zip(prompt_ids, lengths)):
        start = 0 if padding_side == "right" else width - length
        answer_from = start + len(prompt)
        labels[row, answer_from : start + length] = batch["input_ids"][row, answer_from : start + length]
    return labels
