"""A fresh P-Tuning v2 prefix starts as the model's own cache of a preamble: the model answers as after that text."""

import torch

from glmtune.data.tokenizer import load_tokenizer
from glmtune.hparams import FinetuningArguments, ModelArguments
from glmtune.model.finetuning import prepare_for_training
from glmtune.model.loader import load_model
from glmtune.model.prefix_init import PREAMBLE, preamble_ids


def test_a_fresh_prefix_equals_the_preamble_placed_before_the_prompt(tiny_model_dir):
    model_args = ModelArguments(model_name_or_path=str(tiny_model_dir))
    tokenizer = load_tokenizer(model_args)
    prompt = torch.tensor([tokenizer("What is the capital of France?", add_special_tokens=False)["input_ids"]])
    base = load_model(model_args, for_training=True)
    prefix = preamble_ids(tokenizer, 12)
    with torch.no_grad():
        expected = base(input_ids=torch.cat([torch.tensor([prefix]), prompt], dim=1)).logits[:, len(prefix) :]
    tuned = prepare_for_training(base, model_args, FinetuningArguments(finetuning_type="p_tuning", pre_seq_len=12))
    with torch.no_grad():
        got = tuned(input_ids=prompt, attention_mask=torch.ones_like(prompt)).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert any(parameter.requires_grad for parameter in tuned.parameters())


def test_the_preamble_fills_any_prefix_length(tiny_model_dir):
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=str(tiny_model_dir)))
    once = tokenizer(PREAMBLE, add_special_tokens=False)["input_ids"]
    assert preamble_ids(tokenizer, 3) == once[:3]
    assert preamble_ids(tokenizer, 2 * len(once) + 1) == once + once + once[:1]


def test_a_projected_prefix_keeps_peft_s_start(tiny_model_dir):
    model_args = ModelArguments(model_name_or_path=str(tiny_model_dir))
    tuned = prepare_for_training(
        load_model(model_args, for_training=True), model_args,
        FinetuningArguments(finetuning_type="p_tuning", pre_seq_len=4, prefix_projection=True),
    )  # fmt: skip
    prompt = torch.tensor([[5, 6, 7]])
    assert torch.isfinite(tuned(input_ids=prompt, attention_mask=torch.ones_like(prompt)).logits).all()
