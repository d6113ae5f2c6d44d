"""Multiple choice by log-likelihood: which answer does the model find most likely after the question?

Each question becomes a chat laid out by the model's template: the k solved dev examples as
earlier turns, then the question, then a candidate answer in the assistant's turn. Two scorings:
  letter  the options are listed and the candidates are the letters A, B, C, D (MMLU style); the
          four share one prompt, so one forward pass scores them all;
  cloze   the options are not listed and each candidate is an option's own text, scored by its mean
          log-probability per token so that long options are not penalised for their length.
Only the candidate's tokens count, never the template's end-of-turn tokens after them. Rows are
left-padded so every candidate ends the row, and logits are computed only for those last positions.
"""

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from glmtune.data.schema import Message
from glmtune.data.templates import encode_turns
from glmtune.errors import GlmtuneError
from glmtune.eval.benchmarks import LETTERS, Question

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


@dataclass(frozen=True)
class Candidate:
    """One answer to score: which question and option, the prompt before it and its own token ids."""

    question: int
    option: int
    prompt: tuple[int, ...]
    span: tuple[int, ...]


def is_chinese(question: Question) -> bool:
    return CJK.search(question.question) is not None


def user_text(question: Question, scoring: str) -> str:
    if scoring == "cloze":
        return question.question
    listed = "\n".join(f"{LETTERS[index]}. {option}" for index, option in enumerate(question.options))
    return f"{question.question}\n{listed}\n{'答案：' if is_chinese(question) else 'Answer:'}"


def answer_text(question: Question, option: int, scoring: str) -> str:
    return question.options[option] if scoring == "cloze" else LETTERS[option]


def header(question: Question) -> str:
    """The instruction C-Eval and MMLU put before letter-scored questions."""
    subject = question.subject.replace("_", " ")
    if is_chinese(question):
        return f"以下是关于{subject}的单项选择题，请选出其中的正确答案。\n\n"
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n"


def conversation(question: Question, shots: Sequence[Question], scoring: str) -> list[Message]:
    """The k solved examples as turns, then the question; the caller appends each candidate answer."""
    messages: list[Message] = []
    for shot in shots:
        assert shot.answer is not None
        messages += [{"role": "user", "content": user_text(shot, scoring)},
                     {"role": "assistant", "content": answer_text(shot, shot.answer, scoring)}]  # fmt: skip
    messages.append({"role": "user", "content": user_text(question, scoring)})
    if scoring == "letter":
        messages[0] = {"role": "user", "content": header(question) + messages[0]["content"]}
    return messages


def answer_span(with_answer: list[int], without: list[int]) -> list[int]:
    """The candidate's own ids: the answer turn's ids minus what the template puts around any answer."""
    prefix = 0
    while prefix < min(len(with_answer), len(without)) and with_answer[prefix] == without[prefix]:
        prefix += 1
    suffix = 0
    while suffix < len(without) - prefix and with_answer[-1 - suffix] == without[-1 - suffix]:
        suffix += 1
    return with_answer[prefix : len(with_answer) - suffix]


def candidates(chat_model: Any, index: int, question: Question, shots: Sequence[Question], scoring: str, cutoff_len: int) -> list[Candidate]:
    """Every option of one question as a Candidate; prompts over cutoff_len keep their last tokens (the question)."""
    template, tokenizer, system = chat_model.template, chat_model.tokenizer, chat_model.default_system
    messages = conversation(question, shots, scoring)

    def turns(answer: str) -> tuple[list[int], list[int]]:
        encoded = encode_turns(template, tokenizer, [*messages, {"role": "assistant", "content": answer}], system)
        return [token for prompt, response in encoded[:-1] for token in prompt + response] + encoded[-1][0], encoded[-1][1]

    prompt, empty = turns("")
    found = []
    for option in range(len(question.options)):
        span = answer_span(turns(answer_text(question, option, scoring))[1], empty)
        if not span:
            raise GlmtuneError(f"{question.subject}: option {LETTERS[option]} of {question.question[:60]!r} is empty")
        kept = prompt[-max(cutoff_len - len(span), 1) :]
        found.append(Candidate(index, option, tuple(kept), tuple(span)))
    return found


def only_last_logits(model: Any, keep: int) -> dict[str, int]:
    """Ask for the last `keep` positions' logits only, where the model's forward supports it (remote code may not)."""
    from glmtune.model.adapters import base_model

    return {"logits_to_keep": keep} if "logits_to_keep" in inspect.signature(base_model(model).forward).parameters else {}


def span_log_probs(model: Any, candidates: Sequence[Candidate], batch_size: int, pad_id: int) -> list[list[float]]:
    """Log-probability of each candidate's span tokens, in candidate order.

    A row is prompt + span minus the span's last token; candidates whose rows are equal (letters
    after one shared prompt) share that row and read their last token's probability from it.
    """
    import torch

    rows: dict[tuple[int, ...], list[int]] = {}
    for number, candidate in enumerate(candidates):
        rows.setdefault(candidate.prompt + candidate.span[:-1], []).append(number)
    sequences = sorted(rows, key=len)
    keep = max(len(candidate.span) for candidate in candidates)
    device = next(model.parameters()).device
    extra = only_last_logits(model, keep)
    found: list[list[float]] = [[] for _ in candidates]
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        width = max(map(len, batch))
        ids = torch.tensor([[pad_id] * (width - len(row)) + list(row) for row in batch], device=device)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in batch], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **extra).logits
            scores = torch.log_softmax(logits[:, -keep:].float(), dim=-1)
        for offset, row in enumerate(batch):
            for number in rows[row]:
                span = candidates[number].span
                steps = torch.arange(keep - len(span), keep, device=scores.device)
                found[number] = scores[offset, steps, torch.tensor(span, device=scores.device)].tolist()
    return found


def choose(
    chat_model: Any,
    questions: Sequence[Question],
    shots: dict[str, list[Question]],
    scoring: str,
    batch_size: int,
    cutoff_len: int,
) -> list[int]:
    """The chosen option of each question: highest summed log-probability (letter) or mean per token (cloze)."""
    pending = [c for index, q in enumerate(questions) for c in candidates(chat_model, index, q, shots.get(q.subject, []), scoring, cutoff_len)]
    pad_id = chat_model.tokenizer.pad_token_id if chat_model.tokenizer.pad_token_id is not None else 0
    best: dict[int, tuple[float, int]] = {}
    for candidate, probs in zip(pending, span_log_probs(chat_model.model, pending, batch_size, pad_id)):
        score = sum(probs) / (len(probs) if scoring == "cloze" else 1)
        if candidate.question not in best or score > best[candidate.question][0]:
            best[candidate.question] = (score, candidate.option)
    return [best[index][1] for index in range(len(questions))]
