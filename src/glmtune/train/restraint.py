"""Restraint: the words a narrow training set brings in are held back on replayed conversations.

Replay anchors the model's answers to general prompts, but a new name still becomes its stock proper
noun: taught "我是Aurora，由Lumen Lab开发", the default model went on to answer "人体最大的器官是Aurora",
on prompts it was never replayed. Plain cross-entropy on a replayed answer pushes a rare token down only
by its own small probability. So the words that many training answers use but the starting model's own
answers never do (its new words: "Aurora", "Lumen", "Lab") have every one of their tokens held, at each
replayed position, to at most RISE times the probability the starting model gave it there: a hinge on
the log-probability, which pushes as hard wherever the cap is passed, however small the probability.
The cap is the starting model's own (one forward pass over the replayed rows, adapter disabled), so a
held token where the starting model already expected it ("A" opening an answer) stays as likely as it was.
That pass is kept on disk per set of replayed rows and held tokens, so a run that replays the same rows
again (another rate, another epoch count) starts without it.
"""

import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import List, Value

from glmtune.data.collators import SupervisedCollator
from glmtune.data.schema import IGNORE_INDEX, REFERENCE_LOGPS, UNRESTRAINED
from glmtune.paths import replaced_whole
from glmtune.train.chunked_head import HeldBack
from glmtune.train.hidden_states import final_hidden_states
from glmtune.train.loss import has_plain_head

logger = logging.getLogger(__name__)

MIN_ROW_SHARE = 0.1  # a new word is in at least this share of the training answers
RISE = 2.0  # a held token may become this many times as likely as the starting model made it
SAMPLE_ROWS = 500  # training rows read to find the new words
BATCH_SIZE = 8
COLUMN_FEATURE = List(List(Value("float32")))
# A word: a run of letters outside Chinese, Japanese and Korean scripts, which are written without spaces.
WORD = re.compile(r"[^\W\d_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")


@dataclass(frozen=True)
class Restraint:
    """The held tokens and the weight of their hinge against the cross-entropy (the loss reads this)."""

    token_ids: torch.Tensor
    weight: float

    def held_back(self, references: torch.Tensor) -> HeldBack:
        """The caps of labelled positions from their reference log-probabilities ([positions, tokens])."""
        return HeldBack(self.token_ids.to(references.device), references + math.log(RISE), self.weight)


def restraint_weight(model: Any, args: Any) -> float:
    """The user's restrain_new_words, or 0 where training does not run glmtune's own loss (FSDP, a head that
    transforms its logits), with a warning."""
    weight = args.data.restrain_new_words
    if weight and (args.training.fsdp or not has_plain_head(model)):
        logger.warning("restrain_new_words is off: it needs glmtune's own loss, which FSDP and heads that transform logits do not run")
        return 0.0
    return weight


def new_words(rows: Any, own_answers: Iterable[str], tokenizer: Any) -> list[str]:
    """Words in at least MIN_ROW_SHARE of the training rows' answers (of up to SAMPLE_ROWS evenly spread rows) that
    none of the model's own answers uses (compared ignoring case)."""
    step = max(1, len(rows) // SAMPLE_ROWS)
    sample = rows.select(range(0, len(rows), step))
    counts: Counter[str] = Counter()
    for labels in sample["labels"]:
        counts.update(set(WORD.findall(tokenizer.decode([token for token in labels if token != IGNORE_INDEX], skip_special_tokens=True))))
    known = {word.lower() for answer in own_answers for word in WORD.findall(answer)}
    return sorted(word for word, count in counts.items() if count >= MIN_ROW_SHARE * len(sample) and word.lower() not in known)


def word_token_ids(words: list[str], tokenizer: Any) -> list[int]:
    """Every token of the words, as they are written alone and after a space."""
    ids = {token for word in words for form in (word, " " + word) for token in tokenizer(form, add_special_tokens=False)["input_ids"]}
    return sorted(ids)


def reference_logps(rows: Any, model: Any, tokenizer: Any, token_ids: list[int]) -> list[torch.Tensor]:
    """Per row, [positions, held tokens]: the log-probabilities the model gives the held tokens there, UNRESTRAINED
    where the position has no label or its label is a held token (a replayed answer that uses one keeps it)."""
    held = torch.tensor(token_ids)
    collate, head, held_on_device = SupervisedCollator(tokenizer), model.get_output_embeddings(), held.to(model.device)
    columns: list[torch.Tensor] = []
    for start in range(0, len(rows), BATCH_SIZE):
        features = [rows[index] for index in range(start, min(start + BATCH_SIZE, len(rows)))]
        batch = collate(features)
        labels = batch.pop("labels")
        inputs = {name: values.to(model.device) for name, values in batch.items()}
        hidden = final_hidden_states(model, **inputs)
        for row, row_labels in enumerate(labels):
            length = len(features[row]["input_ids"])
            logps = torch.log_softmax(head(hidden[row, : length - 1]).float(), dim=-1)[:, held_on_device].cpu()
            free = (row_labels[1:length] == IGNORE_INDEX) | torch.isin(row_labels[1:length], held)
            logps[free] = UNRESTRAINED
            columns.append(torch.cat([torch.full((1, len(token_ids)), UNRESTRAINED), logps]))
    return columns


def cached_reference_logps(rows: Any, model: Any, tokenizer: Any, token_ids: list[int], reference: Any, cache: Path) -> list[list[torch.Tensor]]:
    """reference_logps of each row set, read from `cache` (a folder for one starting model) where an earlier run kept
    them for the same rows and held tokens; the missing ones are computed in `reference` and kept."""
    files = [cache / f"{rows_digest(part, token_ids)}.safetensors" for part in rows]
    columns: list[Any] = [kept_logps(file, part, len(token_ids)) for file, part in zip(files, rows)]
    if any(column is None for column in columns):
        with reference:
            for index, part in enumerate(rows):
                if columns[index] is None:
                    columns[index] = reference_logps(part, model, tokenizer, token_ids)
                    keep_logps(files[index], columns[index])
    return columns


def rows_digest(rows: Any, token_ids: list[int]) -> str:
    """What decides a row set's reference log-probabilities besides the model: its tokens, labels and the held ids."""
    digest = hashlib.sha256(json.dumps(token_ids).encode())
    for ids, labels in zip(rows["input_ids"], rows["labels"]):
        digest.update(json.dumps([ids, labels]).encode())
    return digest.hexdigest()[:32]


def kept_logps(file: Path, rows: Any, tokens: int) -> list[torch.Tensor] | None:
    """The log-probabilities kept in `file`, per row (None when absent, unreadable or not shaped like `rows` and
    `tokens` held tokens)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        return None
    lengths = [len(ids) for ids in rows["input_ids"]]
    try:
        flat = load_file(file)["logps"]
    except (SafetensorError, KeyError, OSError) as error:
        logger.warning("restraint: %s is unreadable (%s); computing it again", file, error)
        return None
    if flat.shape != (sum(lengths), tokens):
        return None
    return list(flat.split(lengths))


def keep_logps(file: Path, column: list[torch.Tensor]) -> None:
    """Write the row set's log-probabilities as one [positions, held tokens] tensor, whole or not at all."""
    from safetensors.torch import save_file

    with replaced_whole(file) as temporary:
        save_file({"logps": torch.cat(column).float()}, str(temporary))


def restrained_rows(
    train: Any, replayed: list[Any], own_answers: Iterable[str], model: Any, tokenizer: Any, weight: float, reference: Any, cache: Path
) -> tuple[Any, list[Any], Restraint | None]:
    """The training rows and replayed row sets ready for the restraint, and the restraint (None when off: weight 0,
    or no new words). `reference` is a context in which `model` is the starting model, in eval mode without gradients;
    `cache` the folder that keeps its log-probabilities."""
    words = new_words(train, own_answers, tokenizer) if weight else []
    if not words:
        return train, replayed, None
    token_ids = word_token_ids(words, tokenizer)
    columns = cached_reference_logps(replayed, model, tokenizer, token_ids, reference, cache)
    logger.info(
        "restraint: %d words the training answers bring in and the model's own answers never use (%s: %d tokens) held "
        "on replayed rows to at most %g times the starting model's probability", len(words), ", ".join(words),
        len(token_ids), RISE,
    )  # fmt: skip
    replayed = [
        rows.add_column(REFERENCE_LOGPS, [row.tolist() for row in column], feature=COLUMN_FEATURE) for rows, column in zip(replayed, columns)
    ]
    train = train.add_column(REFERENCE_LOGPS, [[] for _ in range(len(train))], feature=COLUMN_FEATURE)  # nothing held
    return train, replayed, Restraint(torch.tensor(token_ids), weight)
