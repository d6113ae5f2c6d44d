"""`glmtune estimate`: predicted peak memory per device of `glmtune train` with the same settings.

Needs a model's config only: the model is built on the meta device (no memory, no weights) and
made trainable by the chosen method's own setup function, so trainable counts are the run's.
"""

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from glmtune.errors import ConfigError
from glmtune.hparams.entry import EstimateRequest, TrainArgs
from glmtune.methods import get_method
from glmtune.model.frozen_weights import held_dtype
from glmtune.train.estimate_inputs import (
    checkpoint_size,
    device_kind,
    model_counts,
    optimizer_state_bytes,
    token_budget,
    tokens_per_forward,
    zero_settings,
)
from glmtune.train.memory_estimate import (
    GIB,
    MIB,
    MemoryEstimate,
    RunSettings,
    estimate_memory,
)

ESTIMATE_FILE = "memory_estimate.json"
SUPERVISED_RECIPE = "glmtune.train.sft:run_sft"  # the recipe whose trainer (GlmtuneTrainer) the estimate models


def model_config(model_args: Any) -> tuple[Any, str | None]:
    """The model's transformers config and its directory, from config.json alone where the model is a folder.

    A ChatGLM- or Baichuan-layout folder maps to its native config field by field, as its
    conversion would, without reading (or needing) the weights.
    """
    from transformers import AutoConfig

    from glmtune.convert import baichuan, chatglm_config
    from glmtune.convert.layout import BAICHUAN, CHATGLM, folder_layout, read_config
    from glmtune.model_source import resolve_model_source

    name = model_args.model_name_or_path
    path = Path(name).expanduser() if name else None
    if path is not None and path.is_dir() and (path / "config.json").is_file():
        layout = folder_layout(path)
        original = read_config(path)
        if layout == CHATGLM:
            native = chatglm_config.to_native_config(original)
        elif layout == BAICHUAN:
            native = baichuan.to_native_config(original, norm_head=False)  # a normalised head has the same shape
        else:
            return AutoConfig.from_pretrained(path, trust_remote_code=model_args.trust_remote_code), str(path)
        return AutoConfig.for_model(native.pop("model_type"), **native), str(path)
    source, extra = resolve_model_source(name, model_args.trust_remote_code)
    return AutoConfig.from_pretrained(source, trust_remote_code=model_args.trust_remote_code, **extra), source


def config_element_size(config: Any) -> int:
    """Bytes per weight in the checkpoint, from the config's dtype (fp32 where it names none)."""
    import torch

    dtype = getattr(config, "dtype", None)
    dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    return dtype.itemsize if isinstance(dtype, torch.dtype) else 4


def meta_model(config: Any, args: TrainArgs, head: str) -> Any:
    """The model on the meta device, made trainable by the method's setup (a fresh adapter: its size is the same)."""
    import torch
    import transformers

    fresh = replace(args.model, adapter_name_or_path=None)
    with torch.device("meta"):
        model = getattr(transformers, head).from_config(config)
        return get_method(args.finetuning.finetuning_type).load_setup()(model, fresh, args.finetuning)


def resolve_target(args: TrainArgs) -> tuple[str, str, int]:
    """The estimated device ("cpu" or "gpu"), its compute precision and its weights' element size.

    A CPU computes as glmtune.precision decides on this machine; a GPU as asked, bf16 for auto
    (a GPU without bf16 runs fp16: the same sizes).
    """
    from glmtune.model.loader import pick_device, pick_dtype
    from glmtune.precision import resolve_precision

    device = pick_device(args.model.device).split(":")[0]
    asked = "bf16" if args.training.bf16 else "fp16" if args.training.fp16 else args.model.precision
    if device == "cpu":
        precision = resolve_precision(asked, "cpu")[0]
    else:
        precision, device = ("bf16" if asked == "auto" else asked), "cuda"
    dtype = pick_dtype(args.model.dtype, device, precision, for_training=True)
    return device_kind(device), precision, dtype.itemsize


def estimate_request(request: EstimateRequest) -> tuple[MemoryEstimate, dict[str, Any]]:
    """The estimate and what it was made for (model, device, precision, tokens per forward pass)."""
    from glmtune.stages import get_stage
    from glmtune.train.micro_batches import supports_packed_rows

    args = request.train
    stage = get_stage(args.finetuning.stage)
    if stage.recipe != SUPERVISED_RECIPE:
        raise ConfigError(f"estimate models the supervised recipe (stage sft or pt), not stage={stage.name}")
    config, directory = model_config(args.model)
    model = meta_model(config, args, stage.head)
    method = get_method(args.finetuning.finetuning_type)
    quantized = args.model.quantization_bit is not None
    params = sum(p.numel() for p in model.parameters())
    checkpoint = checkpoint_size(directory, params, config_element_size(config))
    counts = model_counts(model, checkpoint, quantize_linear=quantized)
    device, precision, weight_bytes = resolve_target(args)
    zero_stage, offload_optimizer, offload_params = zero_settings(request.deepspeed)
    budget = token_budget(args.finetuning.micro_batch_tokens, device, bool(request.deepspeed), args.data.cutoff_len)
    packs_rows = supports_packed_rows(model)
    tokens = tokens_per_forward(budget, packs_rows, args.training.per_device_train_batch_size, args.data.cutoff_len)
    run = RunSettings(
        device=device,
        weight_bytes=weight_bytes,
        compute_bytes=4 if precision == "fp32" else 2,
        quantization_bit=args.model.quantization_bit,
        double_quantization=args.model.double_quantization,
        tokens_per_forward=tokens,
        gradient_checkpointing=args.training.gradient_checkpointing,
        eager_attention=args.model.attn_implementation == "eager",
        segment_attention=bool(budget) and packs_rows and args.model.attn_implementation in (None, "sdpa"),  # as sft.py sets it
        optimizer_state_bytes=optimizer_state_bytes(args.training.optim),
        holds_frozen_linears=held_dtype(precision, method.adapter, quantized, weight_bytes) is not None,
        zero_stage=zero_stage,
        offload_optimizer=offload_optimizer,
        offload_params=offload_params,
        num_devices=request.estimate.num_devices,
    )
    about = {
        "model": args.model.model_name_or_path or "smollm2-135m",
        "finetuning_type": args.finetuning.finetuning_type,
        "device": device,
        "precision": precision,
        "tokens_per_forward": tokens,
        "micro_batch_tokens": budget,
        "zero_stage": zero_stage,
        "num_devices": run.num_devices,
    }
    return estimate_memory(counts, run), about


def size(value: int) -> str:
    return f"{value / GIB:,.2f} GiB" if value >= GIB else f"{value / MIB:,.0f} MiB"


def fits_line(estimate: MemoryEstimate, device_memory: int | None) -> str | None:
    if device_memory is None:
        return None
    verdict = "fits" if estimate.fits(device_memory) else "does not fit"
    return f"{verdict}: {size(estimate.total)} of {size(device_memory)} ({100 * estimate.total / device_memory:.0f}%)"


def render(estimate: MemoryEstimate, about: dict[str, Any], device_memory: int | None) -> None:
    """The itemised estimate as a table, its total, the fits line and the notes."""
    from rich.console import Console
    from rich.table import Table

    title = ", ".join(f"{key} {value}" for key, value in about.items())
    table = Table(title=f"predicted peak memory per device ({title})")
    for column, justify in (("item", "left"), ("memory", "right"), ("held", "left"), ("how", "left")):
        table.add_column(column, justify=justify)
    for item in estimate.items:
        table.add_row(item.name, size(item.bytes), item.phase, item.note)
    table.add_row("peak", size(estimate.total), "", "held throughout + the larger of backward and step", style="bold")
    console = Console()
    console.print(table)
    for line in (fits_line(estimate, device_memory), *estimate.notes):
        if line:
            console.print(line)


def main(argv: Sequence[str]) -> int:
    from glmtune.hparams.entry import get_estimate_args
    from glmtune.train.dataset_defaults import with_dataset_defaults

    request = with_dataset_defaults(argv, get_estimate_args, lambda parsed: parsed.train)
    estimate, about = estimate_request(request)
    device_memory = request.estimate.device_memory_bytes()
    render(estimate, about, device_memory)
    if request.output_dir:
        path = Path(request.output_dir)
        path.mkdir(parents=True, exist_ok=True)
        fits = None if device_memory is None else estimate.fits(device_memory)
        record = {**about, **estimate.as_dict(), "device_memory_bytes": device_memory, "fits": fits}
        (path / ESTIMATE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return 0
