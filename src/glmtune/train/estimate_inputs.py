"""What the memory estimate reads from a model and a run: counts from parameters (a meta-device model built
from a config, or the live model of a training run) and the run's batch shape, optimizer and sharding.

`glmtune estimate` and the training summary both come through here, so the estimate printed
beside a run's measured peak is the one the command would have printed before it.
"""

import json
from math import prod
from pathlib import Path
from typing import Any

import torch

from glmtune.model.adapters import base_model
from glmtune.model.finetuning import LAYER_INDEX
from glmtune.model.frozen_weights import heldable_linears
from glmtune.model.segment_attention import attends_by_segment
from glmtune.train.loss import has_plain_head
from glmtune.train.memory_estimate import (
    MIB,
    MemoryEstimate,
    ModelCounts,
    RunSettings,
    estimate_memory,
)
from glmtune.train.micro_batches import CPU_TOKEN_BUDGET

WEIGHT_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def is_quantized(parameter: Any) -> bool:
    """A bitsandbytes weight: 4-bit ones carry their quant_state, 8-bit ones are int8."""
    return hasattr(parameter, "quant_state") or parameter.dtype == torch.int8


def unquantized_numel(parameter: Any) -> int:
    state = getattr(parameter, "quant_state", None)
    return prod(state.shape) if state is not None else parameter.numel()


def model_counts(model: Any, checkpoint_bytes: int, quantize_linear: bool = False) -> ModelCounts:
    """Counts of a trainable model; quantize_linear: count the frozen linear weights of the body as quantized, as
    bitsandbytes would load them (for a meta-device model built from a config)."""
    base = base_model(model)
    config = base.config.get_text_config()
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    output = base.get_output_embeddings()
    head_ids = {id(p) for p in output.parameters()} if output is not None else set()
    input_side = {id(p) for p in base.get_input_embeddings().parameters()}
    input_side |= {id(p) for p in model.parameters()} - {id(p) for p in base.parameters()}  # PEFT prompt encoders
    linear_weights = {
        id(module.weight): name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and id(module.weight) not in head_ids
    }
    seen: set[int] = set()
    total = trainable = quantized = 0
    first_trainable_layer = config.num_hidden_layers
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in seen:  # tied weights count once
            continue
        seen.add(id(parameter))
        count = unquantized_numel(parameter)
        total += count
        if parameter.requires_grad:
            trainable += count
            layer = LAYER_INDEX.search(name)
            first = 0 if id(parameter) in input_side else int(layer.group(1)) if layer else config.num_hidden_layers
            first_trainable_layer = min(first_trainable_layer, first)
        elif is_quantized(parameter) or (quantize_linear and id(parameter) in linear_weights):
            quantized += count
    on_path = {name: parameter for name, parameter in model.named_parameters() if in_layers_from(name, first_trainable_layer)}
    path_linear = sum(p.numel() for p in on_path.values() if id(p) in linear_weights and not is_quantized(p))
    if quantize_linear:
        path_linear = sum(p.numel() for p in on_path.values() if id(p) in linear_weights and p.requires_grad)
    held = {id(p): p.numel() for module in heldable_linears(model) for p in module.parameters(recurse=False)}
    return ModelCounts(
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        query_width=heads * head_dim,
        kv_width=(getattr(config, "num_key_value_heads", None) or heads) * head_dim,
        num_heads=heads,
        vocab_size=config.vocab_size,
        total_params=total,
        trainable_params=trainable,
        quantized_params=quantized,
        path_layers=config.num_hidden_layers - first_trainable_layer,
        path_linear_params=path_linear,
        held_linear_params=0 if quantize_linear else sum(held.values()),
        path_held_linear_params=0 if quantize_linear else sum(p.numel() for p in on_path.values() if id(p) in held),
        trains_norms=any(p.requires_grad and "norm" in name for name, p in on_path.items()),
        plain_head=has_plain_head(base) and type(output) is torch.nn.Linear and output.bias is None,
        checkpoint_bytes=checkpoint_bytes,
    )


def in_layers_from(name: str, first_layer: int) -> bool:
    layer = LAYER_INDEX.search(name)
    return layer is not None and int(layer.group(1)) >= first_layer


def checkpoint_size(directory: str | Path | None, params: int, element_size: int) -> int:
    """The weight files' bytes in a model directory, else the parameters at the checkpoint's element size."""
    path = Path(directory) if directory else None
    files = [f for f in path.iterdir() if f.suffix in WEIGHT_FILE_SUFFIXES] if path and path.is_dir() else []
    return sum(f.stat().st_size for f in files) or params * element_size


def token_budget(micro_batch_tokens: int | None, device: str, deepspeed: bool, cutoff_len: int) -> int:
    """micro_batch_token_budget's rule for a target device that need not be this machine's: the user's budget,
    else up to CPU_TOKEN_BUDGET on a CPU, off on a GPU and with DeepSpeed."""
    if micro_batch_tokens is not None:
        return micro_batch_tokens
    return min(cutoff_len, CPU_TOKEN_BUDGET) if device == "cpu" and not deepspeed else 0


def tokens_per_forward(budget: int, packs_rows: bool, batch_size: int, longest_row: int) -> int:
    """Tokens in the largest forward pass: a packed micro-batch (a row longer than the budget runs alone), one
    unpadded row, or the whole batch padded to its longest row."""
    if not budget:
        return batch_size * longest_row
    if not packs_rows:
        return longest_row
    return min(max(budget, longest_row), batch_size * longest_row)


def optimizer_state_bytes(optim: Any) -> int:
    """Optimizer state per trainable parameter: AdamW's two fp32 moments, 8-bit optimizers' two bytes, SGD none."""
    name = str(getattr(optim, "value", optim))
    return 2 if "8bit" in name else 0 if name.startswith("sgd") else 8


def zero_settings(deepspeed: str | dict | None) -> tuple[int, bool, bool]:
    """ZeRO stage and whether optimizer state and parameters are offloaded, from a DeepSpeed config file or dict."""
    if not deepspeed:
        return 0, False, False
    config = deepspeed if isinstance(deepspeed, dict) else json.loads(Path(deepspeed).read_text(encoding="utf-8"))
    zero = config.get("zero_optimization", {})

    def offloaded(key: str) -> bool:
        return (zero.get(key) or {}).get("device", "none") in ("cpu", "nvme")

    return int(zero.get("stage", 0)), offloaded("offload_optimizer"), offloaded("offload_param")


def device_kind(device: str) -> str:
    return "cpu" if device == "cpu" else "gpu"


def longest_row(dataset: Any) -> int | None:
    """The longest tokenized row of a map-style dataset with input_ids (None for others)."""
    if dataset is None or not hasattr(dataset, "__len__") or "input_ids" not in getattr(dataset, "column_names", ()):
        return None
    return max((len(ids) for ids in dataset["input_ids"]), default=None)


def loaded_element_size(frozen: Any, quantized_compute_dtype: Any) -> int:
    """The frozen weights' element size as loaded: bitsandbytes' compute dtype beside quantized ones (the weights
    kbit training left unquantized are fp32), else a frozen weight's, else fp32."""
    if isinstance(quantized_compute_dtype, torch.dtype):
        return quantized_compute_dtype.itemsize
    return frozen.element_size() if frozen is not None else 4


def estimate_for_trainer(trainer: Any) -> MemoryEstimate | None:
    """The estimate of a running GlmtuneTrainer's peak, from its live model, settings and data (None for
    trainers whose memory the estimate does not model)."""
    longest = longest_row(trainer.train_dataset)
    if not hasattr(trainer, "micro_batch_tokens") or longest is None:
        return None
    model, args = trainer.model, trainer.args
    base = base_model(model)
    frozen = next((p for p in model.parameters() if not p.requires_grad and p.is_floating_point()), None)
    quantization = getattr(base.config, "quantization_config", None)
    bits = 4 if getattr(base, "is_loaded_in_4bit", False) else 8 if getattr(base, "is_loaded_in_8bit", False) else None
    compute_dtype = getattr(quantization, "bnb_4bit_compute_dtype", None) if bits else None
    counts = model_counts(model, checkpoint_size(base.config.name_or_path, 0, 0))
    stage, offload_optimizer, offload_params = zero_settings(args.deepspeed)
    weight_bytes = loaded_element_size(frozen, compute_dtype)
    run = RunSettings(
        device=device_kind(next(model.parameters()).device.type),
        weight_bytes=weight_bytes,
        compute_bytes=2 if args.bf16 or args.fp16 else 4,
        quantization_bit=bits,
        double_quantization=bool(getattr(quantization, "bnb_4bit_use_double_quant", False)),
        tokens_per_forward=tokens_per_forward(trainer.micro_batch_tokens, trainer.packs_micro_batches,
                                              args.per_device_train_batch_size, longest),
        gradient_checkpointing=args.gradient_checkpointing,
        eager_attention=base.config._attn_implementation == "eager",
        segment_attention=attends_by_segment(model),
        optimizer_state_bytes=optimizer_state_bytes(args.optim),
        holds_frozen_linears=any(m.weight.element_size() < weight_bytes for m in heldable_linears(model)),
        zero_stage=stage,
        offload_optimizer=offload_optimizer,
        offload_params=offload_params,
        num_devices=args.world_size,
    )  # fmt: skip
    return estimate_memory(counts, run)


def estimated_peak_metrics(trainer: Any) -> dict[str, float]:
    """The run's estimated peak for its metrics and summary line, in the MB (MiB) of the measured peak."""
    estimate = estimate_for_trainer(trainer)
    return {} if estimate is None else {"estimated_peak_memory_mb": round(estimate.total / MIB, 1)}
