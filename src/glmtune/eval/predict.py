"""Predict with generate: answer every held-out prompt through ChatModel, in left-padded batches.

Each prompt is encoded the way training encodes it (system prompt and tool descriptions from
the row), cut to cutoff_len keeping its end, where the answer continues (the cuts are counted
and reported), and answered in batches of similar length, so little compute goes to padding;
predictions come back in dataset order.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from glmtune.chat.chat_model import ChatModel
from glmtune.data.schema import Example
from glmtune.errors import GlmtuneError
from glmtune.eval.outputs import Prediction


@dataclass(frozen=True)
class PromptCase:
    index: int
    label: str
    prompt_ids: list[int]
    truncated: bool  # the prompt was longer than cutoff_len and lost its beginning


def prompt_cases(chat_model: ChatModel, examples: Sequence[Example], cutoff_len: int | None = None) -> list[PromptCase]:
    """Split each example into the conversation before its last answer (encoded, cut) and that answer (the label)."""
    cases = []
    for index, example in enumerate(examples):
        messages = list(example["messages"])
        if len(messages) < 2 or messages[-1]["role"] not in ("assistant", "function"):
            raise GlmtuneError(f"{example.get('source', index)}: a sample to predict must end with an answer to compare with")
        ids = chat_model.encode(messages[:-1], example.get("system"), example.get("tools"))
        truncated = cutoff_len is not None and len(ids) > cutoff_len
        cases.append(PromptCase(index, messages[-1]["content"], ids[-cutoff_len:] if truncated else ids, truncated))
    return cases


def batches(cases: list[PromptCase], batch_size: int) -> Iterator[list[PromptCase]]:
    """Batches of cases sorted by prompt length, to keep padding small."""
    ordered = sorted(cases, key=lambda case: len(case.prompt_ids))
    for start in range(0, len(ordered), batch_size):
        yield ordered[start : start + batch_size]


def predict_cases(chat_model: ChatModel, cases: list[PromptCase], batch_size: int, progress: Any | None = None) -> list[Prediction]:
    """Predictions for `cases` in their order; `progress` (a tqdm bar) advances per sample."""
    answers: dict[int, str] = {}
    for batch in batches(cases, batch_size):
        replies = chat_model.answer_prompts([case.prompt_ids for case in batch])
        answers.update((case.index, reply.text) for case, reply in zip(batch, replies))
        if progress is not None:
            progress.update(len(batch))
    decode = chat_model.tokenizer.decode
    return [Prediction(prompt=decode(case.prompt_ids), label=case.label, predict=answers[case.index]) for case in cases]


def generate_predictions(
    chat_model: ChatModel,
    examples: Sequence[Example],
    batch_size: int,
    progress: Any | None = None,
    cutoff_len: int | None = None,
) -> list[Prediction]:
    """Predictions for `examples` in their order, prompts cut to `cutoff_len` tokens (None: uncut)."""
    return predict_cases(chat_model, prompt_cases(chat_model, examples, cutoff_len), batch_size, progress)
