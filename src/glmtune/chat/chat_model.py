"""ChatModel: chat, stream and batch over one loaded model, template and decoding defaults."""

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from glmtune.chat.sampling import GreedyOnInvalidLogits
from glmtune.chat.streaming import CancelFlag, TextPieceStreamer, cut_at_stop
from glmtune.data.schema import Message
from glmtune.data.templates import ChatFormat, Tools, encode_prompt, get_template
from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.generating_args import (
    GeneratingArguments,
    model_generation_settings,
)
from glmtune.hparams.model_args import ModelArguments
from glmtune.hparams.validation import check_generation, raise_if_problems

GENERATION_KEYS = frozenset(f.name for f in fields(GeneratingArguments))
logger = logging.getLogger(__name__)


@dataclass
class ChatResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop": the model or a stop word ended it; "length": max_new_tokens ran out


class ChatStream:
    """Iterate for text pieces; afterwards the token counts and finish reason are filled in.

    Closing the stream early (break, or `close()`) stops generation after the current step.
    """

    def __init__(
        self,
        streamer: TextPieceStreamer,
        cancel: CancelFlag,
        worker: threading.Thread,
        prompt_tokens: int,
        max_new_tokens: int,
    ) -> None:
        self.streamer = streamer
        self.cancel = cancel
        self.worker = worker
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.completion_tokens = 0
        self.finish_reason: str | None = None

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self.streamer
        finally:
            self.close()

    def close(self) -> None:
        self.cancel.set()
        self.worker.join()
        self.completion_tokens = len(self.streamer.token_ids) + int(self.streamer.stopped)
        if self.streamer.stopped:
            self.finish_reason = "stop"
        elif self.streamer.finished:
            self.finish_reason = "length" if self.completion_tokens >= self.max_new_tokens else "stop"
        else:
            self.finish_reason = "cancelled"


class ChatModel:
    """The one inference engine: every front end (terminal, API, web UI, eval) calls this."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: ChatFormat,
        generating_args: GeneratingArguments | None = None,
        default_system: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.generating_args = resolve_decoding(model, generating_args or GeneratingArguments())
        self.default_system = default_system
        self.stop_words = template.stop_words(tokenizer)

    @classmethod
    def from_args(
        cls,
        model_args: ModelArguments,
        data_args: DataArguments,
        generating_args: GeneratingArguments | None,
        model: Any | None = None,
    ) -> "ChatModel":
        """Load the tokenizer (left padding, for batches) and the model, unless a loaded `model` is given."""
        from glmtune.data.tokenizer import load_tokenizer
        from glmtune.model.loader import load_model

        template = get_template(data_args.template)
        tokenizer = load_tokenizer(model_args, padding_side="left")
        model = load_model(model_args) if model is None else model.eval()
        return cls(model, tokenizer, template, generating_args, data_args.default_system)

    def chat(self, messages: list[Message], system: str | None = None, **gen: Any) -> ChatResponse:
        return self.batch_chat([messages], system=system, **gen)[0]

    def batch_chat(
        self, conversations: Sequence[list[Message]], system: str | None = None, **gen: Any
    ) -> list[ChatResponse]:
        """Generate for several conversations in one left-padded batch."""
        return self.answer_prompts([self.encode(messages, system) for messages in conversations], **gen)

    def answer_prompts(self, prompts: Sequence[list[int]], **gen: Any) -> list[ChatResponse]:
        """Answers to already-encoded prompts (eval encodes with tools and cuts long prompts first), in one batch."""
        config, stop_strings, stop_ids = self.generation_setup(gen)
        return [
            self.finish(ids, len(prompt), config.max_new_tokens, stop_strings, stop_ids)
            for ids, prompt in zip(self.generate_rows(prompts, config), prompts)
        ]

    def generate_answers(self, prompts: Sequence[list[int]], **gen: Any) -> list[list[int]]:
        """Answer ids for already-encoded prompts, each kept up to and including its first stop token.

        The stop token stays, so a policy trained on its own answers (ppo) learns where to end them.
        """
        config, _, stop_ids = self.generation_setup(gen)
        answers = []
        for ids in self.generate_rows(prompts, config):
            end = next((index for index, token in enumerate(ids) if token in stop_ids), None)
            answers.append(ids[: end + 1] if end is not None else self.without_trailing_padding(ids))
        return answers

    def generate_rows(self, prompts: Sequence[list[int]], config: GenerationConfig) -> list[list[int]]:
        """The ids generated after each prompt, prompts left-padded into one batch (padding kept at row ends)."""
        batch = self.tokenizer.pad({"input_ids": list(prompts)}, padding=True, padding_side="left", return_tensors="pt")
        with torch.inference_mode():
            output = self.model.generate(
                **batch.to(self.model.device),
                generation_config=config,
                logits_processor=self.safety_processors(),
                tokenizer=self.tokenizer if config.stop_strings else None,
            )
        width = batch["input_ids"].shape[1]
        return [row[width:].tolist() for row in output]

    def stream_chat(self, messages: list[Message], system: str | None = None, **gen: Any) -> ChatStream:
        """Start generating in a background thread; iterate the returned stream for text pieces."""
        config, stop_strings, stop_ids = self.generation_setup(gen)
        if config.num_beams > 1:
            raise ValueError("streaming needs num_beams=1")
        prompt = self.encode(messages, system)
        streamer = TextPieceStreamer(self.tokenizer, stop_strings, stop_ids)
        cancel = CancelFlag()
        input_ids = torch.tensor([prompt], device=self.model.device)

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        generation_config=config,
                        logits_processor=self.safety_processors(),
                        stopping_criteria=StoppingCriteriaList([cancel]),
                        streamer=streamer,
                        tokenizer=self.tokenizer if config.stop_strings else None,
                    )
            except BaseException as error:  # surfaced in the consumer's thread, not lost in this one
                streamer.fail(error)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        return ChatStream(streamer, cancel, worker, len(prompt), config.max_new_tokens)

    def encode(self, messages: list[Message], system: str | None, tools: Tools = None) -> list[int]:
        system = system if system is not None else self.default_system
        return encode_prompt(self.template, self.tokenizer, messages, system, tools)

    def safety_processors(self) -> LogitsProcessorList:
        return LogitsProcessorList([GreedyOnInvalidLogits(self.tokenizer.eos_token_id or 0)])

    def generation_setup(self, overrides: dict[str, Any]) -> tuple[GenerationConfig, list[str], set[int]]:
        """Merge per-call settings over the defaults; single-token stop words become eos ids."""
        user_stops = overrides.pop("stop", None) or []
        unknown = set(overrides) - GENERATION_KEYS
        if unknown:
            raise TypeError(f"unknown generation settings: {', '.join(sorted(unknown))}")
        given = {key: value for key, value in overrides.items() if value is not None}
        if "do_sample" not in given and given.get("temperature"):
            given["do_sample"] = True  # a request's temperature above 0 asks for sampling, whatever the model's default
        settings = replace(self.generating_args, **given)
        raise_if_problems(check_generation(settings))
        stop_strings = list(dict.fromkeys([*self.stop_words, *([user_stops] if isinstance(user_stops, str) else user_stops)]))
        stop_ids = {ids[0] for ids in map(self.token_ids_of, stop_strings) if len(ids) == 1}
        multi_token_stops = [word for word in stop_strings if len(self.token_ids_of(word)) > 1]
        sample = settings.do_sample and settings.temperature > 0
        config = GenerationConfig(
            max_new_tokens=settings.max_new_tokens,
            num_beams=settings.num_beams,
            repetition_penalty=settings.repetition_penalty,
            length_penalty=settings.length_penalty,
            do_sample=sample,
            temperature=settings.temperature if sample else None,
            top_p=settings.top_p if sample else None,
            top_k=settings.top_k if sample else None,
            eos_token_id=sorted(stop_ids) or None,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=multi_token_stops or None,
        )
        return config, stop_strings, stop_ids

    def without_trailing_padding(self, ids: list[int]) -> list[int]:
        """A batch row that ended on a stop string is padded up to the longest row."""
        end = len(ids)
        while end and ids[end - 1] == self.tokenizer.pad_token_id:
            end -= 1
        return ids[:end]

    def token_ids_of(self, word: str) -> list[int]:
        return self.tokenizer.encode(word, add_special_tokens=False)

    def finish(
        self, ids: list[int], prompt_tokens: int, max_new_tokens: int, stop_strings: list[str], stop_ids: set[int]
    ) -> ChatResponse:
        """Cut generated ids at the first stop token or stop string and decode them."""
        end = next((i for i, token in enumerate(ids) if token in stop_ids), None)
        kept = self.without_trailing_padding(ids) if end is None else ids[:end]
        text, found = cut_at_stop(self.tokenizer.decode(kept, skip_special_tokens=True), stop_strings)
        stopped = end is not None or found
        completion_tokens = len(kept) if end is None else end + 1
        return ChatResponse(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason="stop" if stopped or completion_tokens < max_new_tokens else "length",
        )


def resolve_decoding(model: Any, generating_args: GeneratingArguments) -> GeneratingArguments:
    """The user's settings, then the model's generation_config, then glmtune's fallback; logged with their sources."""
    from_model = model_generation_settings(getattr(model, "generation_config", None))
    resolved = generating_args.resolved(from_model)
    sources = generating_args.sources(from_model)
    logger.info(
        "decoding: %s",
        ", ".join(f"{key}={getattr(resolved, key)} ({source})" for key, source in sources.items()),
    )
    return resolved
