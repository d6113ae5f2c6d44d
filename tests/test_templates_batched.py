"""Batched encoding: many conversations tokenized in one call give exactly the ids of encoding them one by one."""

from typing import Any

import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from glmtune.data.shapes import encode_dataset
from glmtune.data.templates import (
    TEMPLATES,
    TOKEN,
    Template,
    encode_pieces,
    encode_turns,
)
from glmtune.hparams.data_args import DataArguments

TOOLS = '[{"name": "get_weather", "description": "Current weather", "parameters": {"type": "object"}}]'
CONVERSATIONS = [
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help you today?"}], None),
    (
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
            {"role": "user", "content": "法国的首都？ {content} <|im_end|>"},
            {"role": "assistant", "content": "巴黎。"},
        ],
        None,
    ),
    ([{"role": "user", "content": "1 + 2 = ?"}], None),
]
TOOL_CONVERSATION = (
    [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "function", "content": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
        {"role": "observation", "content": '{"temperature": 22}'},
        {"role": "assistant", "content": "22 °C."},
    ],
    TOOLS,
)


def supports_tools(name: str) -> bool:
    template = TEMPLATES[name]
    return not isinstance(template, Template) or template.tools is not None


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def piece_by_piece(tokenizer: Any, pieces: list) -> list[int]:
    """The reference: each TOKEN piece by its id where the vocabulary has it, every other piece encoded alone."""
    ids: list[int] = []
    for piece in pieces:
        token = tokenizer.convert_tokens_to_ids(piece.text) if piece.kind == TOKEN else None
        if token is not None and token != tokenizer.unk_token_id:
            ids.append(token)
        else:
            ids += tokenizer.encode(piece.text, add_special_tokens=False)
    return ids


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_one_call_for_many_conversations_gives_the_ids_of_each_piece_encoded_alone(tokenizer, name):
    template = TEMPLATES[name]
    conversations = CONVERSATIONS + ([TOOL_CONVERSATION] if supports_tools(name) else [])
    laid_out = [template.pieces(tokenizer, messages, tools=tools) for messages, tools in conversations]
    expected = [
        [(piece_by_piece(tokenizer, prompt), piece_by_piece(tokenizer, response)) for prompt, response in turns]
        for turns in laid_out
    ]
    assert encode_pieces(tokenizer, laid_out) == expected
    assert [encode_turns(template, tokenizer, messages, tools=tools) for messages, tools in conversations] == expected


def row(messages: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    empty = dict.fromkeys(["system", "tools", "chosen", "rejected", "kto_tag", "text", "source"])
    return {**empty, "messages": messages, **fields}


def test_a_row_encodes_the_same_in_a_batch_with_skipped_rows_as_alone(tokenizer):
    """Skipped rows lay out no conversation, so the rows after them must still get their own ids."""
    conversations = [(CONVERSATIONS[0][0], None), (CONVERSATIONS[1][0], None), TOOL_CONVERSATION]
    good = [row(messages, tools=tools) for messages, tools in conversations]
    bad = row([{"role": "assistant", "content": "out of order"}, {"role": "assistant", "content": "x"}])
    template, data_args = TEMPLATES["qwen"], DataArguments(cutoff_len=40)
    rows = Dataset.from_list([bad, good[0], bad, good[1], good[2]])
    batched, report = encode_dataset(rows, "supervised", template, tokenizer, data_args)
    alone = [encode_dataset(Dataset.from_list([one]), "supervised", template, tokenizer, data_args)[0][0] for one in good]
    assert batched.to_list() == alone
    assert report.kept == 3 and sum(report.skipped.values()) == 2 and report.truncated > 0
