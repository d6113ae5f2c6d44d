"""Predict with generate: answer every held-out prompt through ChatModel, in left-padded batches.

Batches are formed from prompts of similar length (and the same system prompt, which
ChatModel applies per batch), so little compute goes to padding; predictions come back in
dataset order.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from glmtune.chat.chat_model import ChatModel
from glmtune.data.schema import Example, Message
from glmtune.errors import GlmtuneError
from glmtune.eval.outputs import Prediction


@dataclass(frozen=True)
class PromptCase:
    index: int
    messages: list[Message]
    system: str | None
    label: str
    prompt_ids: list[int]


def prompt_cases(chat_model: ChatModel, examples: Sequence[Example]) -> list[PromptCase]:
    """Split each example into the conversation before its last answer and that answer (the label)."""
    cases = []
    for index, example in enumerate(examples):
        messages = list(example["messages"])
        if len(messages) < 2 or messages[-1]["role"] not in ("assistant", "function"):
            raise GlmtuneError(f"{example.get('source', index)}: a sample to predict must end with an answer to compare with")
        history, answer = messages[:-1], messages[-1]
        system = example.get("system")
        ids = chat_model.encode(history, system)
        cases.append(PromptCase(index, history, system, answer["content"], ids))
    return cases


def batches(cases: list[PromptCase], batch_size: int) -> Iterator[list[PromptCase]]:
    """Batches of one system prompt each, from cases sorted by prompt length to keep padding small."""
    ordered = sorted(cases, key=lambda case: (case.system or "", len(case.prompt_ids)))
    batch: list[PromptCase] = []
    for case in ordered:
        if batch and (len(batch) == batch_size or case.system != batch[0].system):
            yield batch
            batch = []
        batch.append(case)
    if batch:
        yield batch


def generate_predictions(
    chat_model: ChatModel, examples: Sequence[Example], batch_size: int, progress: Any | None = None
) -> list[Prediction]:
    """Predictions for `examples` in their order; `progress` (a tqdm bar) advances per sample."""
    cases = prompt_cases(chat_model, examples)
    answers: dict[int, str] = {}
    for batch in batches(cases, batch_size):
        replies = chat_model.batch_chat([case.messages for case in batch], system=batch[0].system)
        answers.update((case.index, reply.text) for case, reply in zip(batch, replies))
        if progress is not None:
            progress.update(len(batch))
    decode = chat_model.tokenizer.decode
    return [Prediction(prompt=decode(case.prompt_ids), label=case.label, predict=answers[case.index]) for case in cases]
