"""generate() with a P-Tuning v2 prefix: PEFT hands the prefix to the model under a name transformers now ignores.

transformers 5 renamed the model's `past_key_values` argument to `cache`, and generate() carries its
DynamicCache under the new name (GenerationMixin.prepare_inputs_for_generation). PEFT's
PeftModelForCausalLM.prepare_inputs_for_generation (peft 0.21) still looks for `past_key_values`: it
never sees generate's cache, builds the prefix cache at every step and returns it as
`past_key_values` beside generate's own `cache`, and the model's deprecated-argument shim keeps
`cache`, dropping the prefix. Generation then answers as the base model does, while the forward
pass (training, eval loss), which passes the prefix alone, is right. For prefix tuning under the
new name, this replaces that method with PEFT's own steps, renamed: the prefix fills the empty
cache before the prompt, and the attention mask and positions count its virtual tokens.
"""

import inspect
import types
from typing import Any

import torch


def with_prefix_generation(model: Any) -> Any:
    """`model` (a PEFT model), its generate() reading and filling transformers' `cache` where a prefix needs it."""
    from peft import PeftModelForCausalLM, PeftType

    prefixes = [config for config in model.peft_config.values() if config.peft_type == PeftType.PREFIX_TUNING]
    if isinstance(model, PeftModelForCausalLM) and prefixes and generation_names_the_cache(model):
        model.prepare_inputs_for_generation = types.MethodType(prepare_prefixed_inputs, model)
    return model


def generation_names_the_cache(model: Any) -> bool:
    """Whether the base model's generation step passes its KV cache as `cache` (not the older `past_key_values`)."""
    return "cache" in inspect.signature(model.base_model_prepare_inputs_for_generation).parameters


def prepare_prefixed_inputs(model: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One generation step's inputs; the prefix is the first cached tokens, placed when the cache is empty."""
    from peft import PeftType

    config = model.active_peft_config
    if config.peft_type != PeftType.PREFIX_TUNING:  # another adapter is active (adapter_swapped_in)
        return type(model).prepare_inputs_for_generation(model, *args, **kwargs)
    inputs = model.base_model_prepare_inputs_for_generation(*args, **kwargs)
    virtual = config.num_virtual_tokens
    cache = inputs.get("cache")
    if cache is None or cache.get_seq_length() == 0:
        inputs["cache"] = model.get_prompt(batch_size=inputs["input_ids"].shape[0], max_cache_len=-1)
    if (mask := inputs.get("attention_mask")) is not None:
        if mask.dim() != 2:
            raise ValueError("P-Tuning generation needs a 2D attention mask: use the default (dynamic) KV cache")
        inputs["attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], virtual), mask], dim=1)
    if (positions := inputs.get("position_ids")) is not None:
        inputs["position_ids"] = positions + virtual
    return inputs
