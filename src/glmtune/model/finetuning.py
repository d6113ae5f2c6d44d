"""Make a loaded model trainable by the chosen method: the setup functions of the method registry.

Each method is one function here named by its record in glmtune/methods.py; adding a method
never touches a central if/elif.
"""

import logging
import re
from typing import Any

import torch

from glmtune.errors import ConfigError
from glmtune.hparams.finetuning_args import FinetuningArguments
from glmtune.hparams.model_args import ModelArguments
from glmtune.hparams.validation import split_names
from glmtune.methods import get_method
from glmtune.model.adapters import load_adapter, peft_task_type
from glmtune.model.frozen_weights import held_dtype, hold_frozen_linears
from glmtune.model.prefix_generation import with_prefix_generation
from glmtune.model.prefix_init import preamble_ids, start_prefix_as_text

logger = logging.getLogger(__name__)
LAYER_INDEX = re.compile(r"\.(?:layers|h|blocks|block)\.(\d+)\.")
SCORE_HEAD = "score"  # transformers' *ForSequenceClassification head


def merged_and_continued(adapters: list[str], create_new_adapter: bool) -> tuple[list[str], str | None]:
    """A LoRA run's given adapters: those merged into its base, and the one it continues training (None: a new one)."""
    if adapters and not create_new_adapter:
        return adapters[:-1], adapters[-1]
    return adapters, None


def setup_lora(model: Any, model_args: ModelArguments, finetuning_args: FinetuningArguments) -> Any:
    """Merge all given adapters but the last; continue the last one or start a fresh LoRA."""
    from peft import LoraConfig, get_peft_model

    merged, resume = merged_and_continued(split_names(model_args.adapter_name_or_path), finetuning_args.create_new_adapter)
    for adapter in merged:
        model = load_adapter(model, adapter).merge_and_unload()
    if resume is not None:
        return load_adapter(model, resume, is_trainable=True)
    targets = split_names(finetuning_args.lora_target)
    config = LoraConfig(
        task_type=peft_task_type(model),
        r=finetuning_args.lora_rank,
        lora_alpha=finetuning_args.lora_alpha or 2 * finetuning_args.lora_rank,
        lora_dropout=finetuning_args.lora_dropout,
        target_modules="all-linear" if targets == ["all"] else targets,
        use_dora=finetuning_args.use_dora,
        use_rslora=finetuning_args.use_rslora,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:  # PEFT names the modules it could not find
        raise ConfigError(f"lora_target={finetuning_args.lora_target}: {error}") from error


def setup_prefix(model: Any, model_args: ModelArguments, finetuning_args: FinetuningArguments) -> Any:
    """P-Tuning v2: trainable key/value prefixes in every layer (PEFT prefix tuning)."""
    from peft import PrefixTuningConfig, get_peft_model

    adapters = split_names(model_args.adapter_name_or_path)
    if adapters:
        return load_adapter(model, adapters[0], is_trainable=True)
    config = PrefixTuningConfig(
        task_type=peft_task_type(model),
        num_virtual_tokens=finetuning_args.pre_seq_len,
        prefix_projection=finetuning_args.prefix_projection,
        encoder_hidden_size=model.config.hidden_size,
    )
    model = with_prefix_generation(get_peft_model(model, config))
    if not finetuning_args.prefix_projection:  # a projected prefix comes out of an MLP: nothing to fill directly
        from glmtune.data.tokenizer import load_tokenizer

        start_prefix_as_text(model, preamble_ids(load_tokenizer(model_args), finetuning_args.pre_seq_len))
    return model


def setup_freeze(model: Any, model_args: ModelArguments, finetuning_args: FinetuningArguments) -> Any:
    """Train only the last (or first) N layers, or modules whose names contain given words."""
    names = split_names(finetuning_args.name_module_trainable)
    layer_count = model.config.num_hidden_layers
    count = finetuning_args.num_layer_trainable
    chosen = range(layer_count - count, layer_count) if count > 0 else range(-count)
    trainable = 0
    for name, parameter in model.named_parameters():
        match = LAYER_INDEX.search(name)
        in_layer = match is not None and int(match.group(1)) in chosen
        new_head = name.startswith(f"{SCORE_HEAD}.")  # a reward model's head starts untrained: it always trains
        parameter.requires_grad_(new_head or in_layer and (not names or any(word in name for word in names)))
        trainable += parameter.requires_grad
    if not trainable:
        raise ConfigError(
            f"freeze tuning selected no parameters (num_layer_trainable={count}, "
            f"name_module_trainable={finetuning_args.name_module_trainable}); parameter names look like "
            f"{next(iter(dict(model.named_parameters())))}"
        )
    upcast_trainable(model)
    return model


def setup_full(model: Any, model_args: ModelArguments, finetuning_args: FinetuningArguments) -> Any:
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    upcast_trainable(model)
    return model


def upcast_trainable(model: Any) -> None:
    """Optimizer states of half-precision weights lose updates; trainable weights train in fp32."""
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype in (torch.float16, torch.bfloat16):
            parameter.data = parameter.data.float()


def prepare_for_training(model: Any, model_args: ModelArguments, finetuning_args: FinetuningArguments) -> Any:
    if model_args.quantization_bit is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    method = get_method(finetuning_args.finetuning_type)
    model = method.load_setup()(model, model_args, finetuning_args)
    weight_bytes = next(model.parameters()).element_size()
    hold = held_dtype(model_args.precision, method.adapter, model_args.quantization_bit is not None, weight_bytes)
    if hold is not None:
        logger.info("frozen linear weights held in %s: %d parameters", hold, hold_frozen_linears(model, hold))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("trainable parameters: %d of %d (%.4f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model
