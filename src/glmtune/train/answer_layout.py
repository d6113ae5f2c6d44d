"""A padded batch of prompt + answer rows packed into one sequence, each distinct prompt run once.

TRL's preference and GRPO trainers score answers on padded rows: DPO runs each prompt twice (chosen
and rejected), GRPO as many times as it samples answers to it (8 in a group), plus the padding. Here
the rows' real tokens are laid end to end (left or right padding dropped); a row whose prompt already
ran earlier in the sequence keeps only its answer, which attends to that prompt as its prefix
(model/segment_attention.py) and continues its positions. The layout also says where each answer
token's log-probability comes from (the packed hidden state before it) and where it goes in TRL's
[rows, length - 1] layout.
"""

from dataclasses import dataclass

import torch

from glmtune.data.schema import IGNORE_INDEX


@dataclass
class PackedLayout:
    """Rows as one packed sequence, and where each answer token's log-probability comes from and goes."""

    input_ids: torch.Tensor  # [1, tokens]
    position_ids: torch.Tensor  # [1, tokens]
    boundaries: torch.Tensor  # segment starts and the end, int32 (flash attention's cu_seq_lens)
    prefixes: list[tuple[int, int] | None]  # per segment: the earlier span it also attends to
    sources: torch.Tensor  # packed index of the hidden state predicting each answer token
    targets: torch.Tensor  # the answer token
    rows: torch.Tensor  # its row in the padded batch
    columns: torch.Tensor  # its position in TRL's shifted [rows, length - 1] layout


def row_spans(attention_mask: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, int, int]] | None:
    """(first real token, first labelled token, end) of each row, or None unless every row's real tokens are one
    span (padding on either side) ending in its labelled tokens."""
    real, labelled = attention_mask.bool(), labels != IGNORE_INDEX
    leads = real.int().argmax(dim=1)
    ends = leads + real.sum(dim=1)
    positions = torch.arange(real.shape[1])
    if not torch.equal((positions >= leads[:, None]) & (positions < ends[:, None]), real):
        return None
    firsts = torch.where(labelled.any(dim=1), labelled.int().argmax(dim=1), ends)
    if not torch.equal(labelled.sum(dim=1), ends - firsts):
        return None
    return list(zip(leads.tolist(), firsts.tolist(), ends.tolist(), strict=True))


def scored(start: int, end: int) -> torch.Tensor:
    """Row positions [start, end) whose token has a predecessor, i.e. can be scored."""
    return torch.arange(max(start, 1), end)


def packed_layout(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> PackedLayout | None:
    """The rows packed in order, each prompt once; None if some row is not prompt + labelled answer."""
    spans = row_spans(attention_mask, labels)
    if spans is None:
        return None
    ids = input_ids.tolist()
    pieces: dict[str, list[torch.Tensor]] = {name: [] for name in ("ids", "positions", "sources", "targets", "rows", "columns")}
    starts: list[int] = []
    prefixes: list[tuple[int, int] | None] = []
    ran: dict[tuple[int, ...], int] = {}  # prompt -> where it starts in the packed sequence
    offset = 0
    for row, (lead, first, end) in enumerate(spans):
        tokens, prompt = ids[row][lead:end], first - lead
        columns, key = scored(prompt, len(tokens)), tuple(tokens[:prompt])
        shared = ran.get(key) if prompt else None
        start = prompt if shared is not None else 0  # a prompt that ran already is left out
        if len(tokens) > start:
            starts.append(offset)
            prefixes.append(None if shared is None else (shared, shared + prompt))
            pieces["ids"].append(torch.tensor(tokens[start:], dtype=torch.long))
            pieces["positions"].append(torch.arange(start, len(tokens)))
        if shared is None:
            if prompt:
                ran[key] = offset
            sources = offset + columns - 1
        else:  # the answer's first token follows the shared prompt's last
            sources = torch.where(columns == prompt, shared + prompt - 1, offset + columns - 1 - prompt)
        offset += len(tokens) - start
        pieces["sources"].append(sources)
        pieces["targets"].append(torch.tensor(tokens, dtype=torch.long)[columns])
        pieces["rows"].append(torch.full_like(columns, row))
        pieces["columns"].append(lead + columns - 1)
    if not starts:
        return None
    return PackedLayout(
        input_ids=torch.cat(pieces["ids"])[None],
        position_ids=torch.cat(pieces["positions"])[None],
        boundaries=torch.tensor([*starts, offset], dtype=torch.int32),
        prefixes=prefixes,
        **{name: torch.cat(pieces[name]) for name in ("sources", "targets", "rows", "columns")},
    )
