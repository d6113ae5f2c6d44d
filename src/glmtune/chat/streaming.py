"""Turn generated token ids into text pieces safely as they arrive.

Pieces never contain half a UTF-8 character (byte-level BPE splits CJK characters across
tokens) and never any part of a stop string: text that could be the start of a stop
string is held back until the next token settles it.
"""

import queue
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

INCOMPLETE_CHAR = "\ufffd"


def cut_at_stop(text: str, stop_strings: list[str]) -> tuple[str, bool]:
    """Text before the first stop string, and whether one was found."""
    positions = [text.find(stop) for stop in stop_strings if stop and stop in text]
    return (text[: min(positions)], True) if positions else (text, False)


def held_back_length(text: str, stop_strings: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    longest = 0
    for stop in stop_strings:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest


class PieceSink(Protocol):
    """Where a streamer puts text pieces, then None at the end or the error that ended it."""

    def put(self, item: str | BaseException | None) -> None: ...


class TextPieceStreamer(BaseStreamer):
    """A `generate()` streamer that queues new text pieces for a consumer thread.

    `pieces` defaults to a thread queue that iterating the streamer drains; the API server
    passes a sink that forwards to its event loop instead.
    """

    def __init__(
        self, tokenizer: Any, stop_strings: list[str], stop_token_ids: set[int], pieces: PieceSink | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = stop_strings
        self.stop_token_ids = stop_token_ids
        self.token_ids: list[int] = []
        self.emitted = 0
        self.prompt_seen = False
        self.stopped = False
        self.finished = False
        self.pieces: PieceSink = pieces if pieces is not None else queue.Queue()

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first pushes the prompt
            self.prompt_seen = True
            return
        if self.stopped:
            return
        new_ids = value.reshape(-1).tolist()
        for token_id in new_ids:
            if token_id in self.stop_token_ids:
                self.stopped = True
                break
            self.token_ids.append(token_id)
        self.emit(final=self.stopped)

    def end(self) -> None:
        self.emit(final=True)
        self.finished = True
        self.pieces.put(None)

    def emit(self, final: bool) -> None:
        text = self.tokenizer.decode(self.token_ids, skip_special_tokens=True)
        text, found = cut_at_stop(text, self.stop_strings)
        self.stopped = self.stopped or found
        if not (final or found):
            if text.endswith(INCOMPLETE_CHAR):
                return
            text = text[: len(text) - held_back_length(text, self.stop_strings)]
        if len(text) > self.emitted:
            self.pieces.put(text[self.emitted :])
            self.emitted = len(text)

    def fail(self, error: BaseException) -> None:
        self.pieces.put(error)

    def __iter__(self) -> Iterator[str]:
        while True:
            piece = self.pieces.get()
            if piece is None:
                return
            if isinstance(piece, BaseException):
                raise piece
            yield piece


class CancelFlag(StoppingCriteria):
    """A switch another thread sets to stop generation after the current step (client gone, user abort)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def set(self) -> None:
        self.event.set()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
