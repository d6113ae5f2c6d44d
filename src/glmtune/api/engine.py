"""The server's inference engine: ChatModel's prompts, settings and stop words in front of the scheduler.

Prompt encoding, the merge of per-request settings over the defaults, stop words and the
NaN-safe logits processor all come from ChatModel, so the API generates exactly what
`glmtune chat` would; only the decoding loop is the scheduler's own.
"""

import logging

import torch

from glmtune.api.sampler import SamplingParams
from glmtune.api.scheduler import GenerationJob, Scheduler, supports_batching
from glmtune.chat.chat_model import ChatModel
from glmtune.chat.streaming import PieceSink, TextPieceStreamer
from glmtune.data.schema import Message
from glmtune.errors import ConfigError

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

    @property
    def context_length(self) -> int:
        config = self.chat_model.model.config
        return getattr(config, "max_position_embeddings", None) or getattr(config, "seq_length", 2048)

    @property
    def default_max_tokens(self) -> int:
        return self.chat_model.generating_args.max_new_tokens

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()

    def encode(self, messages: list[Message]) -> list[int]:
        """Prompt ids; a leading system message wins over the server's default system prompt."""
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
        return self.chat_model.encode(messages, system)

    def make_job(self, prompt: list[int], settings: dict, seed: int | None, sink: PieceSink) -> GenerationJob:
        """A job with ChatModel's merged settings and stop words, and its own random generator."""
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
        )
        streamer = TextPieceStreamer(self.chat_model.tokenizer, stop_strings, stop_ids, sink)
        return GenerationJob(prompt, config.max_new_tokens, sampling, streamer)

    def submit(self, jobs: list[GenerationJob]) -> None:
        self.scheduler.submit(jobs)


def has_prompt_learning_adapter(model: torch.nn.Module) -> bool:
    """PEFT prefix / prompt tuning adds virtual tokens that only PEFT's own generate() accounts for."""
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and config.is_prompt_learning)
