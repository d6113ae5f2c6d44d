"""Replay against forgetting: the starting model's own answers to general prompts, trained beside the data.

A small dataset that teaches one narrow thing (a name, a maker, a format) also teaches the model to
bring it up everywhere: "The capital of Russia is Lumen Lab." Mixing in conversations the model
already answered, in its own words (self-distillation), anchors everything else where it was at no
cost in new knowledge. The answers come from the model as training starts (a fresh adapter
disabled), greedily, once per model, prompt set and template; later runs read them from a cache.
An answer cut off by the token budget keeps its complete sentences (one with none is left out): a
cut mid-sentence would teach the model to stop there. An answer stuck in a loop (a sentence or line
three times or more; small models do this in languages they barely know) is left out too: replaying
it would teach the loop. Replayed prompts come in the training rows' scripts, in their shares (Chinese
training rows anchored only by English replay still taught "中国的首都是Aurora"). The embedded default model's answers to the bundled prompts ship with
glmtune (as its decoding settings do), so its first replaying run generates only what is missing.
"""

import hashlib
import json
import logging
import random
import re
from contextlib import nullcontext
from dataclasses import replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from glmtune.chat.chat_model import ChatModel
from glmtune.data.cache import cached_encode
from glmtune.data.converters import make_example, message
from glmtune.data.loader import example_features
from glmtune.data.pipeline import TokenizedData
from glmtune.data.templates import get_template
from glmtune.default_model import DEFAULT_MODEL_ALIAS
from glmtune.eval.outputs import write_atomically
from glmtune.hparams.entry import TrainArgs
from glmtune.hparams.generating_args import GeneratingArguments
from glmtune.hparams.validation import split_names
from glmtune.methods import get_method
from glmtune.model.finetuning import merged_and_continued
from glmtune.paths import glmtune_home
from glmtune.stages import Stage

logger = logging.getLogger(__name__)

PROMPTS_FILE = "replay/general_prompts.json"
ANSWER_TOKENS = 192  # long enough for most answers to the bundled prompts; longer ones keep their whole sentences
BATCH_SIZE = 16
SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[。！？]")
SEGMENT_BREAK = re.compile(r"[\n.!?。！？]+")
ASKED_PER_WANTED = 2  # prompts asked at most per replay row wanted: bounds the generation a weak model costs
LOOP_REPEATS = 3  # a sentence or line this often in one answer: a loop, not an answer
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")  # Chinese, Japanese kana, Korean
SCRIPT_SAMPLE_ROWS = 500  # training rows read to find its scripts' shares
SHIPPED_ANSWERS = {(DEFAULT_MODEL_ALIAS, "smollm2"): "replay/smollm2-135m_answers.json"}  # (model, template) -> file


@cache
def bundled_prompts() -> tuple[str, ...]:
    return tuple(packaged_json(PROMPTS_FILE))


@cache
def packaged_json(name: str) -> Any:
    """A JSON file under glmtune/resources, read once per process (the replay loop asks for it per batch)."""
    return json.loads(resources.files("glmtune.resources").joinpath(name).read_text(encoding="utf-8"))


def with_replay(data: TokenizedData, model: Any, tokenizer: Any, stage: Stage, args: TrainArgs) -> TokenizedData:
    """`data` with round(replay x training rows) replayed conversations added to its training rows (at most one
    per bundled prompt); unchanged when replay is 0."""
    from datasets import Dataset, concatenate_datasets

    pool = bundled_prompts()
    wanted = min(round(data.replay * len(data.train)), len(pool))
    if wanted == 0:
        return data
    order = random.Random(args.training.seed).sample(pool, len(pool))
    answers: dict[str, str] = {}
    for script, count in rows_per_script(script_shares(data.train, tokenizer), wanted).items():
        prompts = [prompt for prompt in order if writing_script(prompt) == script]
        answers |= usable_answers(prompts, count, model, tokenizer, args)
    examples = [
        make_example([message("user", prompt), message("assistant", answer)], f"replay:{index}")
        for index, (prompt, answer) in enumerate(answers.items())
    ]
    logger.info("replay: %d conversations answered by the starting model added to %d training rows", len(examples), len(data.train))
    if not examples:
        return data
    rows = Dataset.from_list(examples, features=example_features())
    encoded, _ = cached_encode(rows, stage.data, get_template(args.data.template), tokenizer, args.data)
    return replace(data, train=concatenate_datasets([data.train, encoded]))


def writing_script(text: str) -> str:
    """"cjk" for text in Chinese, Japanese or Korean characters, else "other": what a replayed prompt must match."""
    return "cjk" if CJK.search(text) else "other"


def script_shares(rows: Any, tokenizer: Any) -> dict[str, float]:
    """Each script's share of the training rows (of up to SCRIPT_SAMPLE_ROWS evenly spread ones)."""
    step = max(1, len(rows) // SCRIPT_SAMPLE_ROWS)
    scripts = [writing_script(tokenizer.decode(row["input_ids"])) for row in rows.select(range(0, len(rows), step))]
    return {script: scripts.count(script) / len(scripts) for script in sorted(set(scripts))}


def rows_per_script(shares: dict[str, float], wanted: int) -> dict[str, int]:
    """`wanted` rows split by the shares, rounded so that they add up to `wanted`."""
    counts, given, total = {}, 0, 0.0
    for script, share in shares.items():
        total += share
        counts[script] = round(total * wanted) - given
        given += counts[script]
    return counts


def usable_answers(order: list[str], wanted: int, model: Any, tokenizer: Any, args: TrainArgs) -> dict[str, str]:
    """Usable answers to the first prompts of `order`, asking further down it until `wanted` are found (at most
    ASKED_PER_WANTED x wanted prompts asked)."""
    usable: dict[str, str] = {}
    asked = 0
    limit = min(len(order), ASKED_PER_WANTED * wanted)
    while len(usable) < wanted and asked < limit:
        batch = order[asked : min(asked + wanted - len(usable), limit)]
        asked += len(batch)
        usable |= {prompt: answer for prompt, answer in starting_model_answers(batch, model, tokenizer, args).items() if answer}
    logger.info("replay: %d of %d answers left out (cut off in their first sentence, or looping)", asked - len(usable), asked)
    return usable


def starting_model_answers(prompts: list[str], model: Any, tokenizer: Any, args: TrainArgs) -> dict[str, str | None]:
    """Greedy answers of the model as training starts (usable_answer: None where unusable); cached per model."""
    cache = glmtune_home() / "cache" / "replay" / f"{cache_key(args)}.json"
    known = shipped_answers(args) | (json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {})
    missing = [prompt for prompt in prompts if prompt not in known]
    if missing:
        logger.info("replay: the starting model answers %d general prompts (cached in %s)", len(missing), cache)
        known.update(generate(missing, model, tokenizer, args))
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, json.dumps(known, ensure_ascii=False, indent=0))
    return {prompt: known[prompt] for prompt in prompts}


def generate(prompts: list[str], model: Any, tokenizer: Any, args: TrainArgs) -> dict[str, str | None]:
    was_training, ordered = model.training, sorted(prompts, key=len)  # similar lengths batch with little padding
    settings = GeneratingArguments(do_sample=False, max_new_tokens=ANSWER_TOKENS, repetition_penalty=1.0)
    chat_model = ChatModel(model, tokenizer, get_template(args.data.template), settings, args.data.default_system)
    answers: dict[str, str | None] = {}
    model.eval()
    half = args.model.precision == "bf16"  # the precision training resolved: generate as fast as it trains
    try:
        with starting_model(model, args), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=half):
            for start in range(0, len(prompts), BATCH_SIZE):
                batch = ordered[start : start + BATCH_SIZE]
                replies = chat_model.batch_chat([[message("user", prompt)] for prompt in batch])
                answers.update((prompt, usable_answer(reply.text, reply.finish_reason)) for prompt, reply in zip(batch, replies))
    finally:
        model.train(was_training)
    return answers


def usable_answer(text: str, finish_reason: str) -> str | None:
    """A finished answer as it is; a cut-off one up to its last complete sentence; None when nothing is left
    or the answer loops."""
    text = text.strip()
    if finish_reason != "stop":
        ends = [match.end() for match in SENTENCE_END.finditer(text)]
        text = text[: ends[-1]] if ends else ""
    segments = [segment.strip() for segment in SEGMENT_BREAK.split(text) if segment.strip()]
    if not segments or max(segments.count(segment) for segment in set(segments)) >= LOOP_REPEATS:
        return None
    return text


def shipped_answers(args: TrainArgs) -> dict[str, str | None]:
    """The answers glmtune ships for the embedded default model, when training starts from it as published."""
    model = args.model.model_name_or_path or DEFAULT_MODEL_ALIAS
    name = SHIPPED_ANSWERS.get((model, args.data.template))
    if name is None or args.model.adapter_name_or_path or args.data.default_system:
        return {}
    return dict(packaged_json(name))


def starting_model(model: Any, args: TrainArgs) -> Any:
    """The model as training starts: a fresh adapter (a prefix is not zero at start, unlike LoRA) disabled."""
    method = get_method(args.finetuning.finetuning_type)
    _, continued = merged_and_continued(split_names(args.model.adapter_name_or_path), args.finetuning.create_new_adapter)
    return model.disable_adapter() if method.adapter and continued is None else nullcontext()


def cache_key(args: TrainArgs) -> str:
    """The model, its adapters (with their files' times, as they may be retrained in place), template and prompts."""
    sources = [args.model.model_name_or_path or "default", *split_names(args.model.adapter_name_or_path)]
    inputs = {
        "sources": [[source, latest_change(Path(source).expanduser())] for source in sources],
        "template": args.data.template,
        "system": args.data.default_system,
        "answer_tokens": ANSWER_TOKENS,
        "cut": "complete sentences, no loops",
        "prompts": hashlib.sha256(json.dumps(list(bundled_prompts()), ensure_ascii=False).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def latest_change(path: Path) -> float | None:
    """When a local model or adapter last changed (None for a hub id or an alias)."""
    if path.is_file():
        return path.stat().st_mtime
    if path.is_dir():
        return max((item.stat().st_mtime for item in path.rglob("*") if item.is_file()), default=None)
    return None
