"""Frozen linear weights held in bf16 under autocast compute what fp32 weights under autocast compute."""

import copy

import pytest
import torch

from glmtune.model.frozen_weights import (
    held_dtype,
    heldable_linears,
    hold_frozen_linears,
)


@pytest.mark.parametrize(
    ("precision", "adapter", "quantized", "weight_bytes", "expected"),
    [
        ("bf16", True, False, 4, torch.bfloat16),
        ("fp16", True, False, 4, torch.float16),
        ("bf16", False, False, 4, None),  # full and freeze save the base: it keeps its dtype
        ("bf16", True, True, 4, None),  # bitsandbytes layers stay as they are
        ("fp32", True, False, 4, None),
        ("bf16", True, False, 2, None),  # already half (a GPU run)
    ],
)
def test_only_adapter_runs_under_half_autocast_over_wider_weights_hold(precision, adapter, quantized, weight_bytes, expected):
    assert held_dtype(precision, adapter, quantized, weight_bytes) == expected


def lora_pair(model_dir):
    """The same LoRA model twice (B not zero, so every adapter weight has a gradient); the second one held."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0),
    )
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)
    held = copy.deepcopy(model)
    return model, held, hold_frozen_linears(held, torch.bfloat16)


def batch(model) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "labels": ids}


def loss_and_grads(model, inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**inputs).loss
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


def test_held_weights_give_the_same_loss_and_adapter_gradients(tiny_model_dir):
    plain, held, count = lora_pair(tiny_model_dir)
    assert count == sum(p.numel() for module in heldable_linears(held) for p in module.parameters(recurse=False))
    inputs = batch(plain)
    plain_loss, plain_grads = loss_and_grads(plain, inputs)
    held_loss, held_grads = loss_and_grads(held, inputs)
    torch.testing.assert_close(held_loss, plain_loss, rtol=1e-6, atol=1e-6)
    assert plain_grads.keys() == held_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(held_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_only_frozen_untied_linears_change_dtype(tiny_model_dir):
    _, held, count = lora_pair(tiny_model_dir)
    dtypes = {name: p.dtype for name, p in held.named_parameters()}
    assert count > 0
    assert all(dtype == torch.bfloat16 for name, dtype in dtypes.items() if name.endswith("base_layer.weight"))
    assert all(dtype == torch.float32 for name, dtype in dtypes.items() if "lora_" in name or "norm" in name)
    assert held.get_input_embeddings().weight.dtype == torch.float32  # the hidden states between layers stay fp32


def test_outside_autocast_a_held_model_answers_in_the_callers_dtype(tiny_model_dir):
    """Generation in a rollout runs without autocast: held layers round their input and return fp32."""
    plain, held, _ = lora_pair(tiny_model_dir)
    ids = batch(plain)["input_ids"]
    with torch.no_grad():
        plain_logits, held_logits = plain(input_ids=ids).logits, held(input_ids=ids).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_logits = plain(input_ids=ids).logits.float()
    assert held_logits.dtype == torch.float32
    # bf16 products: as far from fp32 as autocast itself is, not equal to it
    assert 0 < (held_logits - plain_logits).abs().mean() <= 3 * (autocast_logits - plain_logits).abs().mean()
    generated = held.generate(input_ids=ids[:, :4], max_new_tokens=5, do_sample=False)
    assert generated.shape == (2, 9)
