"""Held-out loss of any model, the base included: mean cross-entropy per answer token of the held-out rows.

Training reports eval_loss for a fine-tune only; the base model's number on the same rows says how much
the fine-tune learned (and a model that got worse shows it here before in any generated text).
Rows are encoded as training encodes them (template, loss mask, cutoff_len), so the two compare.
"""

from collections.abc import Sequence
from typing import Any

import torch

from glmtune.data.schema import IGNORE_INDEX, Example
from glmtune.hparams.data_args import DataArguments


def held_out_loss(chat_model: Any, examples: Sequence[Example], data_args: DataArguments, batch_size: int) -> float | None:
    """Token-weighted mean loss over the answer tokens; None when no row has an answer token left after cutoff_len."""
    from datasets import Dataset

    from glmtune.data.collators import pad_token_id, supervised_batch
    from glmtune.data.converters import make_example
    from glmtune.data.loader import example_features
    from glmtune.data.shapes import encode_dataset
    from glmtune.stages import get_stage

    complete = [
        make_example(example["messages"], example.get("source") or f"held-out row {index}", example.get("system"), example.get("tools"))
        for index, example in enumerate(examples)
    ]
    rows, _ = encode_dataset(
        Dataset.from_list(complete, features=example_features()), get_stage("sft").data, chat_model.template, chat_model.tokenizer, data_args
    )
    pad_id = pad_token_id(chat_model.tokenizer)
    total, tokens = 0.0, 0
    for start in range(0, len(rows), batch_size):
        rows_here = rows[start : start + batch_size]
        batch = supervised_batch(rows_here["input_ids"], rows_here["labels"], pad_id, None)
        with torch.inference_mode():
            logits = chat_model.model(
                input_ids=batch["input_ids"].to(chat_model.model.device),
                attention_mask=batch["attention_mask"].to(chat_model.model.device),
            ).logits.float()
        targets = batch["labels"][:, 1:].to(logits.device)
        total += float(torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        ))  # fmt: skip
        tokens += int((targets != IGNORE_INDEX).sum())
    return round(total / tokens, 4) if tokens else None
