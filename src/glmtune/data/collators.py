"""Batches of preprocessed samples as padded tensors, padded on the right.

Written by hand rather than with DataCollatorForSeq2Seq because that one pads on the
tokenizer's padding side (often left, for generation) and knows nothing of the position_ids
of packed rows.
"""

from dataclasses import dataclass
from typing import Any

import torch

from glmtune.data.schema import IGNORE_INDEX, REFERENCE_LOGPS, UNRESTRAINED


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, else eos: padded positions are masked out, any id will do."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


def padded_length(sequences: list[list[int]], multiple: int | None) -> int:
    longest = max(len(sequence) for sequence in sequences)
    return -(-longest // multiple) * multiple if multiple else longest


def pad(sequences: list[list[int]], value: int, length: int) -> torch.Tensor:
    batch = torch.full((len(sequences), length), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return batch


def pad_positions(sequences: list[list[int]], length: int) -> torch.Tensor:
    """position_ids of packed rows; padding counts from 0 again, so it forms a segment of its own."""
    batch = torch.arange(length).repeat(len(sequences), 1)
    for row, sequence in enumerate(sequences):
        batch[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
        batch[row, len(sequence) :] -= len(sequence)
    return batch


def pad_vectors(sequences: list[list[list[float]]], value: float, length: int) -> torch.Tensor:
    """Per-position vectors of one width as [rows, length, width] floats, `value` on padding and in rows without
    any (width 0 when no row has one)."""
    width = max((len(sequence[0]) for sequence in sequences if sequence), default=0)
    batch = torch.full((len(sequences), length, width), value, dtype=torch.float32)
    for row, sequence in enumerate(sequences):
        if sequence:
            batch[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.float32)
    return batch


def padded_batch(sequences: list[list[int]], pad_id: int, multiple: int | None = None) -> dict[str, torch.Tensor]:
    """input_ids padded on the right, and the attention_mask of their real tokens."""
    length = padded_length(sequences, multiple)
    mask = torch.arange(length) < torch.tensor([len(sequence) for sequence in sequences])[:, None]
    return {"input_ids": pad(sequences, pad_id, length), "attention_mask": mask.long()}


def supervised_batch(
    input_ids: list[list[int]], labels: list[list[int]], pad_id: int, multiple: int | None
) -> dict[str, torch.Tensor]:
    batch = padded_batch(input_ids, pad_id, multiple)
    return {**batch, "labels": pad(labels, IGNORE_INDEX, batch["input_ids"].shape[1])}


@dataclass
class SupervisedCollator:
    """input_ids, labels (IGNORE_INDEX on padding) and attention_mask, for samples of input_ids and labels.

    Packed rows (with position_ids) get position_ids and no attention_mask: transformers
    then reads sample boundaries from the restarting positions and builds a block-diagonal
    causal mask (sdpa, eager and flash attention), which a padding mask would switch off.
    """

    tokenizer: Any
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids = [feature["input_ids"] for feature in features]
        labels = [feature["labels"] for feature in features]
        batch = supervised_batch(input_ids, labels, pad_token_id(self.tokenizer), self.pad_to_multiple_of)
        if REFERENCE_LOGPS in features[0]:  # replayed rows' restraint (train/restraint.py)
            references = [feature[REFERENCE_LOGPS] for feature in features]
            batch[REFERENCE_LOGPS] = pad_vectors(references, UNRESTRAINED, batch["input_ids"].shape[1])
        if "position_ids" in features[0]:
            del batch["attention_mask"]
            positions = [feature["position_ids"] for feature in features]
            batch["position_ids"] = pad_positions(positions, batch["input_ids"].shape[1])
        return batch


@dataclass
class PairwiseCollator:
    """One batch of 2n rows, the n prompts with their chosen answers then with their rejected ones, as TRL's
    reward trainer reads them."""

    tokenizer: Any
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = [feature["prompt_ids"] + feature[f"{side}_ids"] for side in ("chosen", "rejected") for feature in features]
        return padded_batch(sequences, pad_token_id(self.tokenizer), self.pad_to_multiple_of)


def preference_collator(tokenizer: Any, pad_to_multiple_of: int | None = None) -> Any:
    """TRL's DPO batches (prompt + chosen rows, then prompt + rejected rows, with a mask of the answer tokens)."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    return DataCollatorForPreference(pad_token_id=pad_token_id(tokenizer), pad_to_multiple_of=pad_to_multiple_of)


def unpaired_preference_collator(tokenizer: Any, pad_to_multiple_of: int | None = None) -> Any:
    """TRL's KTO batches: prompt + completion rows with their labels, and the mismatched rows of its KL estimate."""
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    return DataCollatorForUnpairedPreference(pad_token_id=pad_token_id(tokenizer), pad_to_multiple_of=pad_to_multiple_of)


def prompt_collator(tokenizer: Any, pad_to_multiple_of: int | None = None) -> Any:
    """Prompts as id lists with their reference answers: ppo generates from them, so nothing is padded here."""

    def collate(features: list[dict[str, Any]]) -> dict[str, list[Any]]:
        return {"prompt_ids": [list(row["prompt_ids"]) for row in features], "answer": [row["answer"] for row in features]}

    return collate
