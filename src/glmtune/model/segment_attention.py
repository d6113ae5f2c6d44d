"""Attention over packed rows one row at a time, so no work goes to pairs of tokens from different rows.

Several rows packed into one sequence attend, through SDPA, over a dense block-diagonal mask:
the whole square of the packed length is computed, then most of it is masked away, and the
key/value heads of grouped-query attention are copied to every query head first. Given the
rows' boundaries (flash attention's `cu_seq_lens_q`), each row instead runs SDPA's causal
kernel on its own square, key/value heads shared: on the default model, a 480-token sequence
of four rows costs a third of the masked one, forward and backward. Rows of one bucketed length
(and prefix) are stacked into one kernel call: short rows cost in calls more than in arithmetic.
Any other call (no boundaries, padding, a cache, sliding windows, soft-capping) goes to
transformers' SDPA unchanged.
On a CPU, half-precision inputs are attended in fp32 either way (kernel_dtype), with CPU autocast off
around the kernels: autocast lists SDPA among the ops it runs in bf16 and undid the upcast.

A row may also name a shared prefix (`segment_prefixes`, one (start, end) or None per row): it then
attends to those earlier tokens as well, as if they stood right before it. A preference pair is laid
out as prompt + chosen answer, then the rejected answer with the prompt as its prefix, so the prompt
runs through the model once for both answers (train/preference_logps.py).
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from glmtune.model.adapters import base_model
from glmtune.model.shape_buckets import attention_length

SEGMENT_ATTENTION = "sdpa_segments"
# Attention variants that change scores inside a row: only SDPA itself knows how to apply them.
SCORE_CHANGING_KWARGS = ("sliding_window", "softcap", "position_bias", "s_aux")


def segment_boundaries(query: torch.Tensor, key: torch.Tensor, module: Any, kwargs: dict[str, Any]) -> list[int] | None:
    """Row boundaries of a packed causal self-attention call, or None when it must run as plain SDPA."""
    boundaries = kwargs.get("cu_seq_lens_q")
    if boundaries is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return None
    if not getattr(module, "is_causal", True) or any(kwargs.get(name) is not None for name in SCORE_CHANGING_KWARGS):
        return None
    bounds = boundaries.tolist()
    return bounds if bounds[0] == 0 and bounds[-1] == query.shape[2] else None


@dataclass(frozen=True)
class RowBatches:
    """Where the packed tokens go in the batched kernel calls, and back: one call per bucketed length and prefix."""

    shapes: tuple[tuple[int, int, int], ...]  # per call: (rows, bucketed length, prefix length)
    masks: tuple[torch.Tensor | None, ...]  # per call: a row's queries over prefix + row keys; None: causal
    query_index: torch.Tensor  # the packed token in each query slot of the calls, in order
    key_index: torch.Tensor  # the packed token in each key slot: each row's prefix, then the row
    output_index: torch.Tensor  # per packed token, its query slot


@lru_cache(maxsize=8)
def row_batches(bounds: tuple[int, ...], prefixes: tuple[tuple[int, int] | None, ...], device: torch.device) -> RowBatches:
    """The batched layout of packed rows (every layer of a forward reuses it).

    Each row is padded at its end to its bucketed length (model/shape_buckets.py), so the kernels meet few
    shapes; padding slots repeat the row's first token. No real query sees a padded key (causality within the
    row, and the mask beside a prefix) and padded queries' outputs are never read back, so the result and its
    gradients are exact.
    """
    groups: dict[tuple[int, tuple[int, int]], list[int]] = {}
    for index, (start, end, prefix) in enumerate(zip(bounds[:-1], bounds[1:], prefixes, strict=True)):
        groups.setdefault((attention_length(end - start), prefix or (0, 0)), []).append(index)
    shapes, masks, queries, keys, output = [], [], [], [], [0] * bounds[-1]
    for (length, (first, last)), members in groups.items():
        context = last - first
        shapes.append((len(members), length, context))
        masks.append(torch.ones(length, context + length, dtype=torch.bool, device=device).tril(context) if context else None)
        for index in members:
            start, end = bounds[index], bounds[index + 1]
            output[start:end] = range(len(queries), len(queries) + end - start)
            padding = [start] * (length - (end - start))
            queries += [*range(start, end), *padding]
            keys += [*range(first, last), *range(start, end), *padding]
    as_index = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return RowBatches(tuple(shapes), tuple(masks), as_index(queries), as_index(keys), as_index(output))


def batched_rows_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, plan: RowBatches, dropout: float, scaling: float | None
) -> torch.Tensor:
    """Causal attention of packed rows [1, heads, tokens, dim], batched as `plan` lays them out: [1, tokens, heads,
    dim]. Tokens reach the calls and come back through one gather each (one scatter each in backward): slicing
    every row out and back cost a full-size gradient per row and tensor."""

    def gathered(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # [tokens or slots, heads, dim]
        return tensor[0].transpose(0, 1).index_select(0, index)

    def per_row(slots: torch.Tensor, rows: int) -> torch.Tensor:  # [rows x size, heads, dim] -> [rows, heads, size, dim]
        return slots.unflatten(0, (rows, -1)).transpose(1, 2)

    query_sizes = [rows * length for rows, length, _ in plan.shapes]
    key_sizes = [rows * (context + length) for rows, length, context in plan.shapes]
    queries = gathered(query, plan.query_index).split(query_sizes)
    keys, values = (gathered(tensor, plan.key_index).split(key_sizes) for tensor in (key, value))
    grouped = query.shape[1] != key.shape[1]
    outputs = [
        F.scaled_dot_product_attention(
            per_row(q, rows), per_row(k, rows), per_row(v, rows), attn_mask=mask, dropout_p=dropout, scale=scaling,
            is_causal=mask is None, enable_gqa=grouped,
        ).transpose(1, 2).flatten(0, 1)
        for (rows, _, _), mask, q, k, v in zip(plan.shapes, plan.masks, queries, keys, values)
    ]  # fmt: skip
    return torch.cat(outputs).index_select(0, plan.output_index)[None]


def kernel_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype a row's attention runs in: fp32 for half precision on a CPU, where PyTorch's bf16 attention runs
    short rows 2-3x slower than fp32 (80 tokens, forward and backward: 1.39 against 0.52 ms) and its backward keeps
    about 8 MB for every row length it meets, never freed (fp32: nothing); the upcast also rounds less."""
    half = tensor.dtype in (torch.bfloat16, torch.float16)
    return torch.float32 if half and tensor.device.type == "cpu" else tensor.dtype


def segment_attention_forward(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: (batch, heads, length, dim) in, (batch, length, heads, dim) out."""
    dtype, compute = query.dtype, kernel_dtype(query)
    query, key, value = (tensor.to(compute) for tensor in (query, key, value))
    bounds = segment_boundaries(query, key, module, kwargs)
    with torch.autocast("cpu", enabled=False):  # CPU autocast would cast SDPA's inputs back to bf16
        if bounds is None:
            output, weights = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
            return output.to(dtype), weights
        prefixes = tuple(None if prefix is None else tuple(prefix) for prefix in kwargs.get("segment_prefixes") or [None] * (len(bounds) - 1))
        plan = row_batches(tuple(bounds), prefixes, query.device)
        return batched_rows_attention(query, key, value, plan, dropout, scaling).to(dtype), None


def attends_by_segment(model: Any) -> bool:
    """True when the model runs segment_attention_forward, so packed samples may name a shared prefix."""
    return base_model(model).config._attn_implementation == SEGMENT_ATTENTION


def use_segment_attention(model: Any) -> None:
    """Switch a model on SDPA to per-row attention for packed rows; other implementations stay as chosen.

    The name is registered with transformers together with SDPA's mask builder, so every call that
    falls back to SDPA gets exactly the mask SDPA would; the saved config never records it.
    """
    base = base_model(model)
    if base.config._attn_implementation == "sdpa":
        AttentionInterface.register(SEGMENT_ATTENTION, segment_attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(SEGMENT_ATTENTION, sdpa_mask)
        base.set_attn_implementation(SEGMENT_ATTENTION)
