"""GLM-4's tiktoken tokenizer.model as a native fast tokenizer: the same ids as tiktoken plus the original's rules.

The reference is tiktoken itself, set up as GLM-4's tokenization_chatglm.py does:
`tiktoken.Encoding(pat_str=..., mergeable_ranks=..., special_tokens=...)`, the special tokens
numbered after the ranks, [gMASK] <sop> before every encoded text. The ranks file is made
here: all 256 single bytes (in a shuffled order, so ids are not byte values) and merges
learnt on a small English and Chinese text.
"""

import base64
import json
import logging
import random
from collections import Counter
from pathlib import Path

import pytest
from chatglm_checkpoint import TINY_CHATGLM, original_state_dict, save_original

from glmtune.convert.command import convert
from glmtune.convert.glm4_tokenizer import (
    PATTERN,
    SPECIAL_TOKENS,
    build_glm4_tokenizer,
    is_tiktoken,
)
from glmtune.data.templates import encode_turns, get_template

CORPUS = (
    "Hello world, hello there. The quick brown fox jumps over the lazy dog; it's what they'll do.\n"
    "  indented    text\twith tabs\n\n\n"
    "你好，世界！我是一个人工智能助手。今天天气很好，我们一起去公园吧。你好你好\n"
    "numbers 12345 and 2024-06-05, code: def f(x): return x ** 2\n"
)
TEXTS = {
    "english": "Hello world! The quick brown fox isn't lazy, they'll say. HELLO'S",
    "chinese": "你好，世界！今天天气很好，我们去公园吧。",
    "mixed": "GLM-4 是一个模型 with 9B parameters, 1234567 tokens 😀",
    "whitespace": "  two leading\n\nnewlines\r\n\ttab   and  spaces   \n   trailing  ",
    "special": "[gMASK]<sop><|system|>\nYou are GLM-4.<|user|>\n你好<|assistant|>\nHi![MASK]<eop><|endoftext|>",
    "special_glued": "a<|user|>b<sop>philosophy sop eop<|begin_of_image|><|end_of_video|>",
    "empty": "",
}


def train_ranks(corpus: str, merges: int = 150) -> dict[bytes, int]:
    """Byte-level BPE ranks: 256 single bytes, then the most frequent adjacent pair within each pre-token, repeatedly."""
    import regex

    order = list(range(256))
    random.Random(0).shuffle(order)
    ranks = {bytes([byte]): rank for rank, byte in enumerate(order)}
    words = Counter(tuple(bytes([b]) for b in piece.encode()) for piece in regex.findall(PATTERN, corpus))
    for _ in range(merges):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        (left, right), _ = pairs.most_common(1)[0]
        ranks[left + right] = len(ranks)
        merged = Counter()
        for word, count in words.items():
            out, index = [], 0
            while index < len(word):
                if index + 1 < len(word) and (word[index], word[index + 1]) == (left, right):
                    out.append(left + right)
                    index += 2
                else:
                    out.append(word[index])
                    index += 1
            merged[tuple(out)] += count
        words = merged
    return ranks


def write_ranks(path: Path, ranks: dict[bytes, int]) -> Path:
    path.write_text("".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks.items()))
    return path


@pytest.fixture(scope="module")
def ranks() -> dict[bytes, int]:
    return train_ranks(CORPUS)


@pytest.fixture(scope="module")
def model_file(ranks, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ranks(tmp_path_factory.mktemp("tiktoken") / "tokenizer.model", ranks)


@pytest.fixture(scope="module")
def encoding(ranks):
    import tiktoken

    special = {token: len(ranks) + offset for offset, token in enumerate(SPECIAL_TOKENS)}
    return tiktoken.Encoding("glm4-test", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens=special)


def reference_ids(encoding, text: str) -> list[int]:
    prefix = [encoding.encode_single_token(token) for token in ("[gMASK]", "<sop>")]
    return prefix + encoding.encode(text, allowed_special="all")


def test_the_ranks_have_merges_that_tiktoken_uses(ranks, encoding):
    assert len(ranks) > 256
    assert any(len(encoding.decode_single_token_bytes(i)) > 1 for i in encoding.encode(TEXTS["english"] + TEXTS["chinese"]))


def test_tiktoken_and_sentencepiece_files_are_told_apart(model_file, tmp_path):
    assert is_tiktoken(model_file)
    assert not is_tiktoken(write_bytes(tmp_path / "spm", b"\n\x0c\n\x05<unk>\x15\x00\x00\x00\x00\x18\x02"))
    assert not is_tiktoken(write_bytes(tmp_path / "text", b"not a real sentencepiece model"))
    assert not is_tiktoken(write_bytes(tmp_path / "empty", b""))


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", TEXTS)
def test_fast_tokenizer_ids_equal_tiktoken_with_glm4_rules(model_file, encoding, name):
    tokenizer = build_glm4_tokenizer(model_file)
    text = TEXTS[name]
    ids = tokenizer(text)["input_ids"]
    assert ids == reference_ids(encoding, text)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == encoding.encode(text, allowed_special="all")
    assert ids[:2] == [encoding.encode_single_token("[gMASK]"), encoding.encode_single_token("<sop>")]
    assert tokenizer.decode(ids[2:]) == encoding.decode(ids[2:]) == text


def test_special_tokens_follow_the_ranks_in_glm4_order(model_file, ranks):
    tokenizer = build_glm4_tokenizer(model_file)
    assert [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS] == list(range(len(ranks), len(ranks) + 14))
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"


def test_glm4_template_encodes_as_the_original_build_single_message(model_file, encoding):
    """glmtune's glm4 template: role token, encode("\\n"), encode(content), as GLM-4's own code; eos ends the answer."""
    tokenizer = build_glm4_tokenizer(model_file)
    special = encoding.encode_single_token
    messages = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hello, 我是 GLM-4"}]
    [(prompt, response)] = encode_turns(get_template("glm4"), tokenizer, messages)

    def message(role: str, content: str) -> list[int]:
        return [special(f"<|{role}|>")] + encoding.encode("\n") + encoding.encode(content)

    assert prompt == [special("[gMASK]"), special("<sop>"), *message("user", "你好"), special("<|assistant|>")]
    assert response == message("assistant", "Hello, 我是 GLM-4")[1:] + [special("<|endoftext|>")]
    assert tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True)["input_ids"] == prompt


def test_a_converted_glm4_folder_has_the_fast_tokenizer(model_file, encoding, ranks, tmp_path, caplog):
    from transformers import AutoTokenizer

    config = {**TINY_CHATGLM, "padded_vocab_size": 512, "eos_token_id": len(ranks), "pad_token_id": len(ranks)}
    source = save_original(tmp_path / "original", config, original_state_dict(config))
    (source / "tokenizer.model").write_bytes(model_file.read_bytes())
    with caplog.at_level(logging.WARNING, logger="glmtune"):
        native = convert(source, tmp_path / "native", "native", 10**9)
    assert "not a SentencePiece model" not in caplog.text
    tokenizer = AutoTokenizer.from_pretrained(native)
    for text in TEXTS.values():
        assert tokenizer(text)["input_ids"] == reference_ids(encoding, text)
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (config["eos_token_id"], config["pad_token_id"])
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True) == (
        "[gMASK]<sop><|user|>\nhi<|assistant|>"
    )
    back = convert(native, tmp_path / "back", "chatglm", 10**9)
    assert (back / "tokenizer.model").read_bytes() == model_file.read_bytes() and not (back / "tokenizer.json").exists()


def test_special_token_ids_come_from_the_source_tokenizer_config(model_file, ranks, tmp_path):
    """The published GLM-4 folder lists its special tokens in tokenizer_config.json; those ids are kept."""
    from transformers import AutoTokenizer

    source = save_original(tmp_path / "original", TINY_CHATGLM, original_state_dict(TINY_CHATGLM))
    (source / "tokenizer.model").write_bytes(model_file.read_bytes())
    listed = ("<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|user|>")
    decoder = {str(len(ranks) + offset): {"content": token, "special": True} for offset, token in enumerate(listed)}
    (source / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder}))
    native = convert(source, tmp_path / "native", "native", 10**9)
    tokenizer = AutoTokenizer.from_pretrained(native)
    assert [tokenizer.convert_tokens_to_ids(token) for token in listed] == list(range(len(ranks), len(ranks) + len(listed)))
    assert tokenizer("<|user|>x")["input_ids"][:3] == [len(ranks) + 2, len(ranks) + 4, len(ranks) + 6]
