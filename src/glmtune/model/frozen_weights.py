"""Frozen linear weights held in the autocast dtype while an adapter trains beside them.

On a CPU glmtune loads fp32 weights and trains under bf16 autocast. Autocast keeps a cast copy
only of weights that train, so every frozen fp32 weight is cast to bf16 again on every forward
(twice with gradient checkpointing) and the copy is held for backward: 15% of a LoRA step of the
default model, and the weights' memory twice. A frozen weight that autocast only ever reads in
bf16 computes the same numbers when it is stored in bf16, at half the memory and with no casts.

Only adapter methods hold weights this way: they never save the base, so no checkpoint changes
dtype. Embeddings, norms and an output head tied to the input embeddings keep theirs, so the
hidden states between layers stay fp32. Outside autocast (generation in a GRPO or PPO rollout, a
generating evaluation) a held layer rounds its input as autocast would have and returns the
caller's dtype.
"""

from functools import partial
from typing import Any

import torch

HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def held_dtype(precision: str, adapter: bool, quantized: bool, weight_bytes: int) -> torch.dtype | None:
    """The dtype frozen linear weights are held in (None: as loaded): the autocast dtype of an adapter run whose
    weights were loaded wider (weight_bytes each). Quantized bases keep bitsandbytes' layers as they are."""
    compute = HALF_DTYPES.get(precision)
    if not adapter or quantized or compute is None or weight_bytes <= compute.itemsize:
        return None
    return compute


def heldable_linears(model: Any) -> list[torch.nn.Linear]:
    """Plain linear layers whose weights are frozen and not shared with the input embeddings."""
    embeddings = model.get_input_embeddings()
    tied = {id(parameter) for parameter in embeddings.parameters()} if embeddings is not None else set()
    return [
        module
        for module in model.modules()
        if type(module) is torch.nn.Linear and not module.weight.requires_grad and id(module.weight) not in tied
    ]


def hold_frozen_linears(model: Any, dtype: torch.dtype) -> int:
    """Store the frozen linear weights (and biases) in `dtype`; returns how many parameters changed."""
    held = 0
    for module in heldable_linears(model):
        caller_dtype = module.weight.dtype
        for parameter in module.parameters(recurse=False):
            parameter.data = parameter.data.to(dtype)
            held += parameter.numel()
        module.register_forward_pre_hook(round_input_outside_autocast)
        module.register_forward_hook(partial(restore_output_outside_autocast, dtype=caller_dtype))
    release_mapped_checkpoint(model, dtype)
    return held


def release_mapped_checkpoint(model: Any, held: torch.dtype) -> None:
    """Copy the weights that were not held out of the memory-mapped checkpoint file.

    A loaded safetensors file stays mapped, and its read pages resident, while any weight still
    points into it; the embeddings alone would keep all of it, the replaced fp32 linear weights
    included (200 MB more than before holding on the default model, instead of 200 MB less).
    """
    for tensor in (*model.parameters(), *model.buffers()):
        if not tensor.requires_grad and tensor.dtype != held:
            tensor.data = tensor.data.clone()


def round_input_outside_autocast(module: torch.nn.Linear, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    hidden = args[0]
    if torch.is_autocast_enabled(hidden.device.type) or hidden.dtype == module.weight.dtype:
        return None
    return (hidden.to(module.weight.dtype), *args[1:])


def restore_output_outside_autocast(
    module: torch.nn.Linear, args: tuple[Any, ...], output: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor | None:
    if torch.is_autocast_enabled(output.device.type) or output.dtype == dtype:
        return None
    return output.to(dtype)
