"""The text data shape for pre-training: texts tokenized, joined with eos and cut into cutoff_len blocks.

Pre-training needs no template: the texts are the training signal and labels equal input_ids.
"""

from typing import Any

from glmtune.data.row_encoding import LOCATION, SKIP, TRUNCATED


def text_blocks_batch(batch: dict[str, list[Any]], indices: list[int], tokenizer: Any, cutoff_len: int) -> dict[str, list[Any]]:
    """Tokenize a batch's texts in one call, join them with eos and cut the stream into cutoff_len blocks."""
    texts = batch["text"]
    kept = [position for position, text in enumerate(texts) if text and text.strip()]
    stream: list[int] = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if kept:
        for ids in tokenizer([texts[position] for position in kept], add_special_tokens=False)["input_ids"]:
            stream += ids + eos
    blocks = [stream[start : start + cutoff_len] for start in range(0, len(stream), cutoff_len)]
    kept_set = set(kept)
    skipped = [position for position in range(len(texts)) if position not in kept_set]
    sources = batch.get("source") or [None] * len(texts)
    locations = [sources[position] or f"row {indices[position]}" for position in skipped]
    nulls = [None] * len(skipped)
    return {
        "input_ids": blocks + nulls,
        "labels": blocks + nulls,
        "length": [len(block) for block in blocks] + nulls,
        SKIP: [""] * len(blocks) + ["empty text"] * len(skipped),
        TRUNCATED: [False] * (len(blocks) + len(skipped)),
        LOCATION: [""] * len(blocks) + locations,
    }
