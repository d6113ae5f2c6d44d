"""Token ids from laid-out pieces: text pieces through the tokenizer, token pieces by their vocabulary id."""

from typing import Any

from glmtune.data.schema import USER_SIDE, Message
from glmtune.data.templates.engine import TOKEN, ChatFormat, Piece, TurnPieces
from glmtune.data.templates.tools import Tools

EncodedTurn = tuple[list[int], list[int]]


def token_id(tokenizer: Any, piece: Piece, known: dict[str, int | None]) -> int | None:
    """A TOKEN piece's vocabulary id (looked up once per text in `known`); None for a piece read as text.

    A tokenizer that lacks the token reads it as text.
    """
    if piece.kind != TOKEN:
        return None
    if piece.text not in known:
        found = tokenizer.convert_tokens_to_ids(piece.text)
        known[piece.text] = None if found is None or found == tokenizer.unk_token_id else found
    return known[piece.text]


def encode_turns(
    template: ChatFormat, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
) -> list[EncodedTurn]:
    """Token ids per turn: [(prompt_ids, response_ids), ...], the unit on which loss masks are built."""
    return encode_pieces(tokenizer, [template.pieces(tokenizer, messages, system, tools)])[0]


def encode_pieces(tokenizer: Any, conversations: list[list[TurnPieces]]) -> list[list[EncodedTurn]]:
    """Ids of many laid-out conversations, with all their texts tokenized in one call.

    One call over a list lets a fast tokenizer work in Rust (and in parallel) instead of
    paying Python overhead per piece; each text is still encoded on its own, so the ids
    are exactly those of encoding piece by piece.
    """
    known: dict[str, int | None] = {}
    texts = [
        piece.text
        for turns in conversations
        for turn in turns
        for side in turn
        for piece in side
        if token_id(tokenizer, piece, known) is None
    ]
    encoded = iter(
        tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"] if texts else []
    )

    def ids(side: list[Piece]) -> list[int]:
        out: list[int] = []
        for piece in side:
            token = token_id(tokenizer, piece, known)
            out += next(encoded) if token is None else [token]
        return out

    return [[(ids(prompt), ids(response)) for prompt, response in turns] for turns in conversations]


def encode_prompt(
    template: ChatFormat, tokenizer: Any, messages: list[Message], system: str | None = None, tools: Tools = None
) -> list[int]:
    """Ids of a conversation ending on a user-side turn, ready for the model to answer."""
    if messages and messages[-1].get("role") not in USER_SIDE:
        raise ValueError("a prompt for generation must end with a user or observation message")
    turns = encode_turns(template, tokenizer, messages, system, tools)
    return [token for prompt, response in turns for token in prompt + response]
