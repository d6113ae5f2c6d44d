"""ChatGLM's SentencePiece tokenizer as a native fast tokenizer: the same ids as SentencePiece plus the original's rules.

The reference is written here from the original tokenizer's documented behaviour: ids from
the SentencePiece model itself for text; the special tokens numbered after its vocabulary
in the order [MASK] [gMASK] [sMASK] sop eop (ChatGLM3: then <|system|> <|user|>
<|assistant|> <|observation|>), kept whole in text, the text between them encoded on its
own; [gMASK] sop before every encoded text.
"""

import logging
import re
from pathlib import Path

import pytest
from chatglm_checkpoint import TINY_CHATGLM, original_state_dict, save_original
from tiny_sentencepiece import TEXTS, train_sentencepiece

from glmtune.convert.chatglm_tokenizer import (
    MASK_TOKENS,
    ROLE_TOKENS,
    build_chatglm_tokenizer,
)
from glmtune.convert.command import convert
from glmtune.data.templates import encode_turns, get_template


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_sentencepiece(tmp_path_factory.mktemp("spm") / "tokenizer.model")


def reference_ids(model_file: Path, text: str, roles: bool = True) -> list[int]:
    """The original tokenizer's ids: specials by their numbers, each stretch of text through SentencePiece."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    special = MASK_TOKENS + (ROLE_TOKENS if roles else ())
    number = {token: processor.get_piece_size() + offset for offset, token in enumerate(special)}
    whole = [re.escape(token) for token in special if token.isalpha()]
    pattern = "|".join([rf"(?<!\w)(?:{'|'.join(whole)})(?!\w)"] + [re.escape(token) for token in special if not token.isalpha()])
    ids, start = [number["[gMASK]"], number["sop"]], 0
    for match in re.finditer(pattern, text):
        ids += processor.encode(text[start : match.start()]) + [number[match.group()]]
        start = match.end()
    return ids + processor.encode(text[start:])


@pytest.mark.parametrize("name", TEXTS)
def test_fast_tokenizer_ids_equal_sentencepiece_with_chatglm_rules(sentencepiece_model, name):
    import sentencepiece

    tokenizer = build_chatglm_tokenizer(sentencepiece_model, roles=True)
    text = TEXTS[name]
    ids = tokenizer(text)["input_ids"]
    assert ids == reference_ids(sentencepiece_model, text)
    if not any(token in text for token in MASK_TOKENS + ROLE_TOKENS):
        processor = sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model))
        assert tokenizer.decode(ids, skip_special_tokens=True) == processor.decode(processor.encode(text))


def test_chatglm3_template_encodes_as_the_original_build_chat_input(sentencepiece_model):
    """glmtune's chatglm3 template over the converted tokenizer: role token, encode("\\n"), encode(content), as ChatGLM3's own code."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model))
    tokenizer = build_chatglm_tokenizer(sentencepiece_model, roles=True)
    ids = dict(zip(MASK_TOKENS + ROLE_TOKENS, range(processor.get_piece_size(), 10**6)))
    messages = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hello, 我是 ChatGLM3"}]
    [(prompt, response)] = encode_turns(get_template("chatglm3"), tokenizer, messages)

    def message(role: str, content: str) -> list[int]:
        return [ids[f"<|{role}|>"]] + processor.encode("\n") + processor.encode(content)

    assert prompt == [ids["[gMASK]"], ids["sop"], *message("user", "你好"), ids["<|assistant|>"]]
    assert response == message("assistant", "Hello, 我是 ChatGLM3")[1:] + [processor.eos_id()]
    assert tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True)["input_ids"] == prompt


def test_chatglm2_has_no_role_tokens_and_its_own_chat_template(sentencepiece_model):
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model))
    tokenizer = build_chatglm_tokenizer(sentencepiece_model, roles=False)
    assert tokenizer(TEXTS["roles"])["input_ids"] == reference_ids(sentencepiece_model, TEXTS["roles"], roles=False)
    prompt = "[Round 1]\n\n问：你好\n\n答："
    encoded = tokenizer.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=True)["input_ids"]
    assert encoded == [processor.get_piece_size() + 1, processor.get_piece_size() + 3] + processor.encode(prompt)


def test_a_converted_chatglm_folder_has_the_fast_tokenizer(sentencepiece_model, tmp_path):
    from transformers import AutoTokenizer

    config = {**TINY_CHATGLM, "padded_vocab_size": 512}
    source = save_original(tmp_path / "original", config, original_state_dict(config))
    (source / "tokenizer.model").write_bytes(sentencepiece_model.read_bytes())
    (source / "tokenization_chatglm.py").write_text('role_special_tokens = ["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]\n')
    native = convert(source, tmp_path / "native", "native", 10**9)
    tokenizer = AutoTokenizer.from_pretrained(native)
    assert tokenizer(TEXTS["roles"])["input_ids"] == reference_ids(sentencepiece_model, TEXTS["roles"])
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (config["eos_token_id"], config["pad_token_id"])
    back = convert(native, tmp_path / "back", "chatglm", 10**9)
    assert (back / "tokenizer.model").read_bytes() == sentencepiece_model.read_bytes() and not (back / "tokenizer.json").exists()


def test_a_tokenizer_model_that_is_not_sentencepiece_is_left_with_a_warning(tmp_path, caplog):
    """A tokenizer.model that is neither SentencePiece nor a tiktoken ranks file: no fast tokenizer is made up for it."""
    source = save_original(tmp_path / "original", TINY_CHATGLM, original_state_dict(TINY_CHATGLM))
    with caplog.at_level(logging.WARNING, logger="glmtune"):
        native = convert(source, tmp_path / "native", "native", 10**9)
    assert not (native / "tokenizer.json").exists()
    assert "not a SentencePiece model" in caplog.text
