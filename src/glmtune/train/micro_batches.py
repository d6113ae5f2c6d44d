"""Run a padded batch as padding-free micro-batches whose gradients add up to the whole batch's.

A batch padded to its longest row spends compute and activation memory on padding: on the
alpaca demo data at cutoff 512 and batch 4, 45% of the positions are padding. On a CPU small
matrix products lose little speed, so each step instead runs its rows without padding, several
short rows packed into one sequence (restarting position_ids mark the rows; on SDPA each row then
attends on its own, see model/segment_attention.py), up to a token budget per micro-batch. The loss of every
micro-batch is divided by the label count of the whole batch, so the summed gradients equal
those of the padded batch, and activation memory follows the budget instead of the batch.

Rows that begin alike (a template's system prompt: 21 of about 70 tokens of every row on the default
model's identity data) can share that beginning: it runs once per micro-batch, and every other row's
remainder attends to it as its prefix (model/segment_attention.py), as a preference pair shares its prompt.
"""

from typing import Any

import torch

from glmtune.data.packing import pack_rows
from glmtune.data.schema import IGNORE_INDEX, REFERENCE_LOGPS, UNRESTRAINED
from glmtune.model.adapters import base_model
from glmtune.model.shape_buckets import (
    MICRO_BATCH_BUCKETS_PER_DOUBLING,
    bucketed_length,
)

SPLITTABLE_KEYS = {"input_ids", "labels", "attention_mask", "position_ids", REFERENCE_LOGPS}
# At 512 tokens matrix products already run at full speed on a CPU, while activation memory
# keeps growing with the budget (and, off SDPA, a packed sequence's dense mask with its square).
CPU_TOKEN_BUDGET = 512
# A shorter shared beginning saves less than the masked attention of a prefixed row costs.
MIN_SHARED_PREFIX = 8


def supports_packed_rows(model: Any) -> bool:
    """True when the model reads sample boundaries from restarting position_ids.

    transformers' own model classes do (masking_utils), through every attention implementation;
    code loaded with trust_remote_code may attend across samples, and prefix tuning's virtual
    tokens need an attention mask, which switches the detection off.
    """
    if getattr(model, "peft_config", None) and any(
        config.is_prompt_learning for config in model.peft_config.values()
    ):
        return False
    base = base_model(model)
    return type(base).__module__.startswith("transformers.models.")


def micro_batch_token_budget(finetuning_args: Any, data_args: Any, training_args: Any) -> int:
    """The user's micro_batch_tokens, else up to CPU_TOKEN_BUDGET on a CPU, and 0 (off) where large padded
    batches run faster."""
    if finetuning_args.micro_batch_tokens is not None:
        return finetuning_args.micro_batch_tokens
    if torch.cuda.is_available() or training_args.deepspeed:
        return 0
    return min(data_args.cutoff_len, CPU_TOKEN_BUDGET)


def row_lengths(batch: dict[str, torch.Tensor]) -> list[int]:
    """Real tokens per row of a right-padded batch; rows without an attention mask count whole."""
    if "attention_mask" in batch:
        return batch["attention_mask"].sum(dim=1).tolist()
    return [batch["input_ids"].shape[1]] * batch["input_ids"].shape[0]


def sample_boundaries(position_ids: torch.Tensor) -> dict[str, Any]:
    """Flash attention's description of the samples in one packed sequence, for per-sample attention
    (model/segment_attention.py); a sample starts wherever positions do not count on (transformers' rule)."""
    starts = torch.nonzero(position_ids[1:] != position_ids[:-1] + 1).flatten() + 1
    if not len(starts):
        return {}
    boundaries = torch.cat([torch.tensor([0]), starts, torch.tensor([len(position_ids)])]).to(torch.int32)
    longest = int((boundaries[1:] - boundaries[:-1]).max())
    return {"cu_seq_lens_q": boundaries, "cu_seq_lens_k": boundaries, "max_length_q": longest, "max_length_k": longest}


def shared_prefix_length(input_ids: list[list[int]], labels: list[list[int]]) -> int:
    """How many leading tokens all rows can share: tokens every row starts with, none of them a target, whose
    next token is no target either (in a packed remainder its predecessor is another row's token), leaving each
    row a token of its own; 0 when that is under MIN_SHARED_PREFIX or there is one row."""
    if len(input_ids) < 2:
        return 0
    first_target = min(next((index for index, label in enumerate(row) if label != IGNORE_INDEX and index), len(row)) for row in labels)
    limit = min(first_target - 1, min(len(ids) for ids in input_ids) - 1)
    length = 0
    while length < limit and all(ids[length] == input_ids[0][length] for ids in input_ids):
        length += 1
    return length if length >= MIN_SHARED_PREFIX else 0


def unlabelled_values(rows: dict[str, list[list[Any]]]) -> dict[str, Any]:
    """Per label-aligned column of the rows: its value at a position without a label."""
    values: dict[str, Any] = {"labels": IGNORE_INDEX}
    if REFERENCE_LOGPS in rows:
        values[REFERENCE_LOGPS] = [UNRESTRAINED] * len(rows[REFERENCE_LOGPS][0][0])
    return values


def packed(rows: dict[str, list[list[Any]]], capacity: int, start: int = 0) -> list[dict[str, list[Any]]]:
    """The rows from their `start`-th token on, packed into sequences of at most `capacity` tokens."""
    unlabelled = unlabelled_values(rows)
    aligned = {name: ([row[start:] for row in rows[name]], value) for name, value in unlabelled.items() if name != "labels"}
    positions = rows.get("position_ids")
    return pack_rows(
        [ids[start:] for ids in rows["input_ids"]], [labels[start:] for labels in rows["labels"]], capacity,
        None if positions is None else [row[start:] for row in positions], aligned,
    )  # fmt: skip


def pack_sharing_prefix(rows: dict[str, list[list[Any]]], capacity: int, prefix: int) -> list[dict[str, list[Any]]]:
    """Rows packed after their first `prefix` tokens, each sequence led by those tokens once.

    Remainders keep counting positions from `prefix`: the sequence's first row joins the prefix as one
    sample, and every later remainder starts a sample there, which segment_prefixes() recognises.
    """
    positions = rows.get("position_ids") or [list(range(len(ids))) for ids in rows["input_ids"]]
    lead = {name: [value] * prefix for name, value in unlabelled_values(rows).items()}
    lead |= {"input_ids": rows["input_ids"][0][:prefix], "position_ids": positions[0][:prefix]}
    sequences = packed({**rows, "position_ids": positions}, capacity - prefix, prefix)
    return [{name: lead[name] + sequence[name] for name in lead} for sequence in sequences]


def segment_prefixes(position_ids: list[int], boundaries: list[int], prefix: int) -> list[tuple[int, int] | None]:
    """Per sample of a sequence from pack_sharing_prefix: the shared prefix for remainders, which start at
    position `prefix` (every other sample starts at 0), else None."""
    return [(0, prefix) if position_ids[start] == prefix else None for start in boundaries[:-1]]


def packed_micro_batch(sequence: dict[str, list[Any]], prefix: int = 0) -> dict[str, Any]:
    """One packed sequence as a batch of one row, with its sample boundaries (and, for a sequence led by a
    shared prefix of that many tokens, which samples attend to it).

    The sequence is filled up to its bucketed length with one more sample that has no labels
    (its own positions, so it attends only to itself): it adds nothing to the loss or gradients.
    """
    filler = bucketed_length(len(sequence["input_ids"]), MICRO_BATCH_BUCKETS_PER_DOUBLING) - len(sequence["input_ids"])
    unlabelled = unlabelled_values({name: [values] for name, values in sequence.items()})
    sequence = {
        **{name: sequence[name] + [value] * filler for name, value in unlabelled.items()},
        "input_ids": sequence["input_ids"] + sequence["input_ids"][-1:] * filler,
        "position_ids": sequence["position_ids"] + list(range(filler)),
    }
    batch: dict[str, Any] = {
        name: torch.tensor([values], dtype=torch.float32 if name == REFERENCE_LOGPS else torch.long)
        for name, values in sequence.items()
    }
    boundaries = sample_boundaries(batch["position_ids"][0])
    if prefix and boundaries:
        boundaries["segment_prefixes"] = segment_prefixes(sequence["position_ids"], boundaries["cu_seq_lens_q"].tolist(), prefix)
    return {**batch, **boundaries}


def single_row(batch: dict[str, torch.Tensor], row: int, length: int) -> dict[str, torch.Tensor]:
    """One row with its padding cut to its bucketed length (see MICRO_BATCH_BUCKETS_PER_DOUBLING), its other inputs unchanged."""
    return {name: values[row : row + 1, : bucketed_length(length, MICRO_BATCH_BUCKETS_PER_DOUBLING)] for name, values in batch.items()}


def split_into_micro_batches(
    batch: dict[str, Any], token_budget: int, pack: bool, share_prefix: bool = False
) -> list[dict[str, Any]]:
    """The batch as micro-batches of at most token_budget real tokens (one row each when pack is False);
    with share_prefix (the model attends by segment), the rows' common beginning runs once per micro-batch.

    A batch with inputs beyond token ids, labels, mask and positions (images, token types)
    stays whole: only these four are known to split and join exactly.
    """
    if set(batch) - SPLITTABLE_KEYS or "labels" not in batch:
        return [batch]
    lengths = row_lengths(batch)
    if not pack:
        return [single_row(batch, row, length) for row, length in enumerate(lengths)]
    rows = {
        name: [batch[name][row, :length].tolist() for row, length in enumerate(lengths)]
        for name in ("input_ids", "labels", "position_ids", REFERENCE_LOGPS)
        if name in batch
    }
    prefix = shared_prefix_length(rows["input_ids"], rows["labels"]) if share_prefix else 0
    if prefix and 2 * prefix <= token_budget:
        return [packed_micro_batch(sequence, prefix) for sequence in pack_sharing_prefix(rows, token_budget, prefix)]
    return [packed_micro_batch(sequence) for sequence in packed(rows, token_budget)]
