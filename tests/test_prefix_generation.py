"""A P-Tuning v2 prefix generates what its forward pass computes: the same greedy tokens, batched or not, reloaded."""

import pytest
import torch
from transformers import GenerationConfig

from glmtune.chat.chat_model import ChatModel
from glmtune.data.templates import get_template
from glmtune.data.tokenizer import load_tokenizer
from glmtune.hparams import FinetuningArguments, ModelArguments
from glmtune.model.finetuning import prepare_for_training
from glmtune.model.loader import load_model
from glmtune.model.prefix_init import preamble_ids

PREFIX_LENGTH = 6
NEW_TOKENS = 8
PROMPTS = ["What is the capital of France?", "Hi"]  # different lengths: the batch is left-padded


@pytest.fixture(scope="module")
def prefixed(tiny_model_dir):
    """A fresh prefix (the preamble's cache), the tokenizer and the prompts' ids."""
    model_args = ModelArguments(model_name_or_path=str(tiny_model_dir))
    tokenizer = load_tokenizer(model_args, padding_side="left")
    finetuning_args = FinetuningArguments(finetuning_type="p_tuning", pre_seq_len=PREFIX_LENGTH)
    model = prepare_for_training(load_model(model_args, for_training=True), model_args, finetuning_args).eval()
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in PROMPTS]
    return model, tokenizer, prompts


def greedy_by_forward(model, prompt: list[int], steps: int = NEW_TOKENS) -> list[int]:
    """Greedy decoding the slow way: a full forward pass per token, no cache, the argmax appended."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            input_ids = torch.tensor([ids])
            logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
            ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt) :]


def until_stop(ids: list[int], stop: int) -> list[int]:
    return ids[: ids.index(stop) + 1] if stop in ids else ids


def greedy_config(tokenizer) -> GenerationConfig:
    return GenerationConfig(
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def glmtune_rows(model, tokenizer, prompts: list[list[int]]) -> list[list[int]]:
    """glmtune's generation path (chat, eval predictions, ppo rollouts), the prompts in one left-padded batch."""
    chat_model = ChatModel(model, tokenizer, get_template("qwen"))
    rows = chat_model.generate_rows(prompts, greedy_config(tokenizer))
    return [until_stop(row, tokenizer.eos_token_id) for row in rows]


def test_generate_equals_greedy_forward_passes(prefixed):
    model, tokenizer, prompts = prefixed
    for prompt in prompts:
        input_ids = torch.tensor([prompt])
        config = GenerationConfig(max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config
            )
        generated = output[0, len(prompt) :].tolist()
        assert until_stop(generated, tokenizer.eos_token_id) == until_stop(
            greedy_by_forward(model, prompt), tokenizer.eos_token_id
        )


def test_a_fresh_prefix_generates_as_after_the_preamble(prefixed):
    model, tokenizer, prompts = prefixed
    preamble = preamble_ids(tokenizer, PREFIX_LENGTH)
    with model.disable_adapter():
        after_preamble = [greedy_by_forward(model, preamble + prompt) for prompt in prompts]
        without_prefix = [greedy_by_forward(model, prompt) for prompt in prompts]
    assert after_preamble != without_prefix, "the preamble must change the answer, or this test proves nothing"
    expected = [until_stop(ids, tokenizer.eos_token_id) for ids in after_preamble]
    assert [until_stop(greedy_by_forward(model, prompt), tokenizer.eos_token_id) for prompt in prompts] == expected
    assert glmtune_rows(model, tokenizer, prompts) == expected


def test_a_reloaded_prefix_generates_what_it_computes(prefixed, tiny_model_dir, tmp_path):
    model, tokenizer, prompts = prefixed
    model.save_pretrained(tmp_path)
    reloaded = load_model(ModelArguments(model_name_or_path=str(tiny_model_dir), adapter_name_or_path=str(tmp_path)))
    embedding = reloaded.prompt_encoder["default"].embedding.weight
    with torch.no_grad():  # moved off the preamble's cache, as training would
        embedding.add_(0.3 * torch.randn(embedding.shape, generator=torch.Generator().manual_seed(0)))
    expected = [until_stop(greedy_by_forward(reloaded, prompt), tokenizer.eos_token_id) for prompt in prompts]
    assert glmtune_rows(reloaded, tokenizer, prompts) == expected
