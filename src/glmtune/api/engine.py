"""The server's inference engine: ChatModel's prompts, settings and stop words in front of the scheduler.

Prompt encoding, the merge of per-request settings over the defaults, stop words and the
NaN-safe logits processor all come from ChatModel, so the API generates exactly what
`glmtune chat` would; only the decoding loop is the scheduler's own.
"""

import logging
import re
from functools import lru_cache
from typing import Any

import torch

from glmtune.api.sampler import SamplingParams
from glmtune.api.scheduler import GenerationJob, Scheduler, supports_batching
from glmtune.chat.chat_model import ChatModel
from glmtune.chat.context_window import context_length
from glmtune.chat.streaming import PieceSink, TextPieceStreamer
from glmtune.data.schema import Message
from glmtune.data.templates import ToolSyntax, encode_prompt
from glmtune.data.templates.tools import ToolSpec
from glmtune.errors import ConfigError

BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # sentencepiece's byte fallback

logger = logging.getLogger(__name__)


class Engine:
    """The model behind the server: encodes requests into jobs and runs them on the batching scheduler."""

    def __init__(self, chat_model: ChatModel, max_batch_size: int, max_waiting: int) -> None:
        if chat_model.generating_args.num_beams > 1:
            raise ConfigError("the API server decodes without beam search: set num_beams=1")
        if has_prompt_learning_adapter(chat_model.model):
            raise ConfigError(
                "the API server cannot serve P-Tuning (prefix) adapters yet: its batched KV cache has no room for "
                "virtual tokens; use `glmtune chat` for this adapter, or a LoRA adapter"
            )
        if max_batch_size > 1 and not supports_batching(chat_model.model):
            logger.info("this model's KV cache cannot be merged across requests; serving one request at a time")
            max_batch_size = 1
        self.chat_model = chat_model
        self.scheduler = Scheduler(chat_model.model, chat_model.safety_processors(), max_batch_size, max_waiting)
        self.token_cache: dict[int, tuple[str, list[int]]] = {}

    @property
    def template_name(self) -> str:
        return self.chat_model.template.name

    @property
    def tool_syntax(self) -> ToolSyntax | None:
        """The template's tool syntax; None for templates without tool use (and the tokenizer's own template)."""
        return getattr(self.chat_model.template, "tools", None)

    @property
    def vocab_size(self) -> int:
        return len(self.chat_model.tokenizer)

    @property
    def context_length(self) -> int:
        return context_length(self.chat_model.model.config)

    @property
    def default_max_tokens(self) -> int:
        return self.chat_model.generating_args.max_new_tokens

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()

    def encode(self, messages: list[Message], tools: list[ToolSpec] | None = None, opening: str = "") -> list[int]:
        """Prompt ids; a leading system message wins over the server's default system prompt.

        `tools` are listed the template's way; `opening` starts the answer (a forced tool call).
        """
        chat_model = self.chat_model
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
        if not tools:
            ids = chat_model.encode(messages, system)
        else:
            system = system if system is not None else chat_model.default_system
            ids = encode_prompt(chat_model.template, chat_model.tokenizer, messages, system, tools)
        return ids + (chat_model.tokenizer.encode(opening, add_special_tokens=False) if opening else [])

    def token_info(self, token_id: int) -> tuple[str, list[int]]:
        """A token's text and its UTF-8 bytes (a piece of a character has bytes but no text of its own)."""
        if token_id not in self.token_cache:
            tokenizer = self.chat_model.tokenizer
            text = tokenizer.decode([token_id], skip_special_tokens=False)
            self.token_cache[token_id] = (text, token_bytes(tokenizer, token_id, text))
        return self.token_cache[token_id]

    def make_job(
        self,
        prompt: list[int],
        settings: dict,
        seed: int | None,
        sink: PieceSink,
        adjustments: dict[str, Any] | None = None,
        top_logprobs: int | None = None,
    ) -> GenerationJob:
        """A job with ChatModel's merged settings and stop words, and its own random generator.

        adjustments: the API's own logit settings (presence_penalty, frequency_penalty, logit_bias).
        top_logprobs: None for no log-probabilities, else the alternatives to record per token.
        """
        config, stop_strings, stop_ids = self.chat_model.generation_setup(dict(settings))
        generator = torch.Generator(device=self.chat_model.model.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        sampling = SamplingParams(
            temperature=config.temperature if config.do_sample else 0.0,
            top_p=config.top_p or 1.0,
            top_k=config.top_k or 0,
            repetition_penalty=config.repetition_penalty,
            generator=generator,
            **(adjustments or {}),
        )
        streamer = TextPieceStreamer(self.chat_model.tokenizer, stop_strings, stop_ids, sink)
        return GenerationJob(prompt, config.max_new_tokens, sampling, streamer, top_logprobs=top_logprobs)

    def submit(self, jobs: list[GenerationJob]) -> None:
        self.scheduler.submit(jobs)


def has_prompt_learning_adapter(model: torch.nn.Module) -> bool:
    """PEFT prefix / prompt tuning adds virtual tokens that only PEFT's own generate() accounts for."""
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and config.is_prompt_learning)


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, reversed: the character that stands for each byte -> that byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes)}


def token_bytes(tokenizer: Any, token_id: int, text: str) -> list[int]:
    """The bytes a token stands for: byte-level BPE and byte-fallback tokens may hold part of a character."""
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(piece, str):
        fallback = BYTE_TOKEN.fullmatch(piece)
        if fallback:
            return [int(fallback.group(1), 16)]
        backend = getattr(tokenizer, "backend_tokenizer", None)
        decoder = getattr(backend, "decoder", None)
        table = byte_decoder()
        if type(decoder).__name__ == "ByteLevel" and all(char in table for char in piece):
            return [table[char] for char in piece]
    return list(text.encode("utf-8"))
