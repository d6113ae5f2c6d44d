"""The template mechanism that ChatModel relies on; every template's golden text is in test_templates_golden.py."""

import pytest
from transformers import AutoTokenizer

from glmtune.data.templates import encode_prompt, encode_turns, get_template
from glmtune.errors import ConfigError

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "法国的首都？"},
    {"role": "assistant", "content": "巴黎。"},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.mark.parametrize("name", ["default", "qwen"])
def test_turns_concatenate_to_the_tokenizers_own_rendering(tokenizer, name):
    turns = get_template(name).render(tokenizer, CONVERSATION)
    assert len(turns) == 2
    assert "".join(p + r for p, r in turns) == tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert turns[1] == ("<|im_start|>user\n法国的首都？<|im_end|>\n<|im_start|>assistant\n", "巴黎。<|im_end|>\n")


def test_default_system_is_used_only_when_none_given(tokenizer):
    prompt, _ = get_template("qwen").render(tokenizer, CONVERSATION[1:2])[0]
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    prompt, _ = get_template("qwen").render(tokenizer, CONVERSATION[1:2], system="Custom")[0]
    assert "Custom" in prompt and "helpful" not in prompt


def test_encode_prompt_ends_with_the_generation_prompt(tokenizer):
    ids = encode_prompt(get_template("qwen"), tokenizer, CONVERSATION[:4])
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    pairs = encode_turns(get_template("qwen"), tokenizer, CONVERSATION)
    assert tokenizer.decode(pairs[0][1]) == "Hello!<|im_end|>\n"


def test_broken_role_order_is_reported_with_its_index(tokenizer):
    with pytest.raises(ValueError, match="message 1: expected role 'assistant'"):
        get_template("qwen").render(tokenizer, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_unknown_template_suggests_close_names():
    with pytest.raises(ConfigError, match="did you mean qwen"):
        get_template("qwne")
