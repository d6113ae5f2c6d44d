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
On a CPU, half-precision inputs are attended in fp32 either way (kernel_dtype).

A row may also name a shared prefix (`segment_prefixes`, one (start, end) or None per row): it then
attends to those earlier tokens as well, as if they stood right before it. A preference pair is laid
out as prompt + chosen answer, then the rejected answer with the prompt as its prefix, so the prompt
runs through the model once for both answers (train/preference_logps.py).
"""

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


def bucketed_rows_attention(
    rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], length: int, prefix_key: torch.Tensor,
    prefix_value: torch.Tensor, dropout: float, scaling: float | None, grouped: bool,
) -> list[torch.Tensor]:
    """Causal attention of rows of the bucketed length `length` that all also see every token of one prefix
    (possibly none), run as one batch.

    Each row is padded at its end to the bucketed length (model/shape_buckets.py) so the kernels meet few
    shapes; no real query sees a padded key (causality within the row, and the mask beside a prefix) and
    the padded queries' outputs are cut off, so the result and its gradients are exact. Stacking the rows
    makes one kernel call of them instead of one each (for short rows the calls, not the arithmetic, cost).
    """
    tokens, context = [row[0].shape[2] for row in rows], prefix_key.shape[2]
    query, key, value = (torch.cat([F.pad(row[part], (0, 0, 0, length - size)) for row, size in zip(rows, tokens)]) for part in range(3))
    mask = None
    if context:
        stacked = (len(rows), -1, -1, -1)
        key, value = torch.cat([prefix_key.expand(stacked), key], dim=2), torch.cat([prefix_value.expand(stacked), value], dim=2)
        mask = torch.ones(length, context + length, dtype=torch.bool, device=query.device).tril(context)
    output = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling, is_causal=mask is None, enable_gqa=grouped
    )
    return [output[index : index + 1, :, :size] for index, size in enumerate(tokens)]


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
    if bounds is None:
        output, weights = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        return output.to(dtype), weights
    grouped = query.shape[1] != key.shape[1]
    prefixes = kwargs.get("segment_prefixes") or [None] * (len(bounds) - 1)
    groups: dict[tuple[int, tuple[int, int]], list[int]] = {}  # (bucketed length, prefix) -> the rows run together
    for index, (start, end, prefix) in enumerate(zip(bounds[:-1], bounds[1:], prefixes, strict=True)):
        groups.setdefault((attention_length(end - start), prefix or (0, 0)), []).append(index)
    outputs: dict[int, torch.Tensor] = {}
    for (length, (first, last)), members in groups.items():
        rows = [tuple(tensor[:, :, bounds[index] : bounds[index + 1]] for tensor in (query, key, value)) for index in members]
        context = (key[:, :, first:last], value[:, :, first:last])
        attended = bucketed_rows_attention(rows, length, *context, dropout=dropout, scaling=scaling, grouped=grouped)
        for index, output in zip(members, attended):
            outputs[index] = output
    return torch.cat([outputs[index] for index in range(len(outputs))], dim=2).transpose(1, 2).to(dtype).contiguous(), None


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
