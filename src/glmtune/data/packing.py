"""Packing: several samples into one sequence of at most `capacity` tokens.

One bin-packing routine serves both the `packing` data option (samples packed into rows of
cutoff_len, stored in the dataset) and the padding-free micro-batches of training
(train/micro_batches.py), so both fill sequences the same way. Packed samples restart their
position_ids, from which transformers (and glmtune's per-sample attention) read the boundaries.
"""

import bisect
from typing import Any

from datasets import Dataset, Features, List, Value

from glmtune.data.schema import IGNORE_INDEX

PACKING_BATCH_ROWS = 10_000  # samples packed together: more rows fill sequences better
IDS = List(Value("int32"))
PACKED_COLUMNS = {"input_ids": IDS, "labels": IDS, "position_ids": IDS, "length": Value("int32")}


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Group sample indices into bins of at most `capacity` tokens (a longer sample stands alone).

    Longest samples first, each into the fullest bin it fits: few bins, little padding.
    Each bin lists its members in index order.
    """
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted by room
    bins: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True):
        length = lengths[index]
        slot = bisect.bisect_left(free, (length, -1))
        if slot == len(free):
            bins.append([index])
            room, where = capacity - length, len(bins) - 1
        else:
            room, where = free.pop(slot)
            bins[where].append(index)
            room -= length
        if room > 0:
            bisect.insort(free, (room, where))
    return [sorted(members) for members in bins]


def pack_rows(
    input_ids: list[list[int]],
    labels: list[list[int]],
    capacity: int,
    position_ids: list[list[int]] | None = None,
    label_aligned: dict[str, tuple[list[list[Any]], Any]] | None = None,
) -> list[dict[str, list[Any]]]:
    """Rows packed into sequences by best_fit_decreasing.

    Positions restart at 0 for each row (or keep the row's own, for rows that are packed
    already), so attention stays within a sample; a row's first label is the target of the
    previous token, which belongs to another row, so it is ignored. `label_aligned` columns (name ->
    rows, the value of a position without a label) follow the labels, their rows' first values replaced alike.
    """
    lengths = [len(ids) for ids in input_ids]
    columns = {"labels": (labels, IGNORE_INDEX), **(label_aligned or {})}
    packed = []
    for members in best_fit_decreasing(lengths, capacity):
        sequence: dict[str, list[Any]] = {"input_ids": [], "position_ids": [], **{name: [] for name in columns}}
        for index in members:
            sequence["input_ids"] += input_ids[index]
            sequence["position_ids"] += position_ids[index] if position_ids else range(lengths[index])
            for name, (rows, unlabelled) in columns.items():
                sequence[name] += [unlabelled] + rows[index][1:]
        packed.append(sequence)
    return packed


def pack_batch(batch: dict[str, list[Any]], capacity: int) -> dict[str, list[Any]]:
    """A batch of samples as packed rows, in PACKED_COLUMNS."""
    packed = pack_rows(batch["input_ids"], batch["labels"], capacity)
    output = {name: [sequence[name] for sequence in packed] for name in ("input_ids", "labels", "position_ids")}
    return {**output, "length": [len(ids) for ids in output["input_ids"]]}


def pack_dataset(dataset: Dataset, capacity: int, num_proc: int | None) -> Dataset:
    return dataset.map(
        pack_batch,
        batched=True,
        batch_size=PACKING_BATCH_ROWS,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        features=Features(PACKED_COLUMNS),
        fn_kwargs={"capacity": capacity},
        desc="packing",
    )
