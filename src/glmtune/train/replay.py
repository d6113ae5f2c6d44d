"""Replay against forgetting: the starting model's own answers to general prompts, trained beside the data.

A small dataset that teaches one narrow thing (a name, a maker, a format) also teaches the model to
bring it up everywhere: "The capital of Russia is Lumen Lab." Mixing in conversations the model
already answered, in its own words (self-distillation), anchors everything else where it was at no
cost in new knowledge. The answers come from the model as training starts (a fresh adapter
disabled), greedily, once per model, prompt set and template; later runs read them from a cache.
Only an answer's first ANSWER_TOKENS are replayed: that is where a new fact bleeds in ("The capital
of Austria is ..."), and it keeps replay cheap. An answer that goes on past them is replayed without
its end-of-turn, so the model learns how its answers begin, not to stop there; one that ended within
them keeps its end. Each epoch replays other prompts while the bundled ones last: more prompts anchored
for the cost of replaying the same ones again. Replayed prompts come in the training rows' scripts, in
their shares (Chinese training rows anchored only by English replay still taught "中国的首都是Aurora").
The embedded default model's answers to the bundled prompts ship with glmtune (as its decoding settings
do), so its first replaying run generates none. On the replayed rows, the words the training data brings in
are held back where the starting model did not expect them (train/restraint.py).
"""

import hashlib
import json
import logging
import math
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from glmtune.chat.chat_model import ChatModel
from glmtune.data.cache import cached_encode
from glmtune.data.converters import make_example, message
from glmtune.data.loader import example_features
from glmtune.data.pipeline import RotatingRows, TokenizedData
from glmtune.data.schema import IGNORE_INDEX
from glmtune.data.shapes import encode_dataset
from glmtune.data.templates import get_template
from glmtune.default_model import DEFAULT_MODEL_ALIAS
from glmtune.hparams.entry import TrainArgs
from glmtune.hparams.generating_args import GeneratingArguments
from glmtune.hparams.validation import split_names
from glmtune.methods import get_method
from glmtune.model.finetuning import merged_and_continued
from glmtune.paths import glmtune_home, write_atomically
from glmtune.stages import Stage
from glmtune.train.restraint import restrained_rows, restraint_weight

logger = logging.getLogger(__name__)

PROMPTS_FILE = "replay/general_prompts.json"
ANSWER_TOKENS = 32  # an answer's start: where bleed shows ("The capital of Austria is Lumen Lab.")
BATCH_SIZE = 16
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")  # Chinese, Japanese kana, Korean
SCRIPT_SAMPLE_ROWS = 500  # training rows read to find its scripts' shares
SHIPPED_ANSWERS = {(DEFAULT_MODEL_ALIAS, "smollm2"): "replay/smollm2-135m_answers.json"}  # (model, template) -> file

Answer = tuple[str, bool]  # the reply's text and whether the model ended it within ANSWER_TOKENS


@cache
def bundled_prompts() -> tuple[str, ...]:
    return tuple(packaged_json(PROMPTS_FILE))


@cache
def packaged_json(name: str) -> Any:
    """A JSON file under glmtune/resources, read once per process."""
    return json.loads(resources.files("glmtune.resources").joinpath(name).read_text(encoding="utf-8"))


def with_replay(data: TokenizedData, model: Any, tokenizer: Any, stage: Stage, args: TrainArgs) -> TokenizedData:
    """`data` with round(replay x training rows) replayed conversations per epoch added to its training rows: other
    prompts each epoch while the bundled ones last (RotatingRows); unchanged when replay is 0."""
    from datasets import concatenate_datasets

    pool = bundled_prompts()
    per_epoch = min(round(args.data.replay * len(data.train)), len(pool))
    if per_epoch == 0:
        return data
    rounds = replay_rounds(args.training, per_epoch, len(pool))
    order = random.Random(args.training.seed).sample(pool, len(pool))
    groups: list[list[str]] = [[] for _ in range(rounds)]
    for script, count in rows_per_script(script_shares(data.train, tokenizer), per_epoch).items():
        prompts = [prompt for prompt in order if writing_script(prompt) == script]
        for index, group in enumerate(groups):  # a script's prompts run out: later groups start over
            group += [prompts[(index * count + offset) % len(prompts)] for offset in range(count)]
    asked = list(dict.fromkeys(prompt for group in groups for prompt in group))
    answers = starting_model_answers(asked, model, tokenizer, args)
    end = answer_end_ids(stage, tokenizer, args)
    encoded = [encoded_group(group, answers, end, stage, tokenizer, args) for group in groups]
    size = min(0 if group is None else len(group) for group in encoded)
    logger.info(
        "replay: %d conversations answered by the starting model per epoch (%d sets, one each epoch) added to %d "
        "training rows (%d of %d replayed without their end)",
        size, rounds, len(data.train), sum(not answers[prompt][1] for prompt in asked), len(asked),
    )  # fmt: skip
    if size == 0:
        return data
    fixed, replayed, restraint = restrained_rows(
        data.train, [group.select(range(size)) for group in encoded], [answers[prompt][0] for prompt in asked], model,
        tokenizer, restraint_weight(model, args), starting_model_context(model, args), reference_cache(args),
    )  # fmt: skip
    train = concatenate_datasets([fixed, *replayed])
    return replace(data, train=train, rotating=RotatingRows(rounds, size) if rounds > 1 else None, restraint=restraint)


def replay_rounds(training: Any, per_epoch: int, pool: int) -> int:
    """Sets of replayed prompts: one per epoch, as far as the bundled prompts go (a run by max_steps: one set)."""
    epochs = 1 if training.max_steps > 0 else math.ceil(training.num_train_epochs)
    return max(1, min(epochs, math.ceil(pool / per_epoch)))


def encoded_group(prompts: list[str], answers: dict[str, Answer], end: list[int], stage: Stage, tokenizer: Any, args: TrainArgs) -> Any:
    """One set of replayed conversations as training rows; an answer that goes on is replayed without its end
    (`end`: the template's end-of-turn ids)."""
    from datasets import concatenate_datasets

    texts = {prompt: answers[prompt] for prompt in prompts if answers[prompt][0]}
    finished = encoded_replay({prompt: text for prompt, (text, ended) in texts.items() if ended}, stage, tokenizer, args)
    going_on = encoded_replay({prompt: text for prompt, (text, ended) in texts.items() if not ended}, stage, tokenizer, args)
    if going_on is not None:
        going_on = going_on.map(lambda row: without_end(row, end), desc="replay: answers that go on")
    parts = [part for part in (finished, going_on) if part is not None]
    return concatenate_datasets(parts) if parts else None


def encoded_replay(answers: dict[str, str], stage: Stage, tokenizer: Any, args: TrainArgs) -> Any:
    """Prompt -> answer conversations encoded as the stage's training rows (None when there are none)."""
    from datasets import Dataset

    if not answers:
        return None
    examples = [
        make_example([message("user", prompt), message("assistant", answer)], f"replay:{index}")
        for index, (prompt, answer) in enumerate(answers.items())
    ]
    rows = Dataset.from_list(examples, features=example_features())
    return cached_encode(rows, stage.data, get_template(args.data.template), tokenizer, args.data)[0]


def answer_end_ids(stage: Stage, tokenizer: Any, args: TrainArgs) -> list[int]:
    """The labelled ids the template puts after an answer's text (its end-of-turn): what the labels of two probe
    answers end in alike."""
    from datasets import Dataset

    probes = [make_example([message("user", "a"), message("assistant", text)], "replay:probe") for text in ("yes", "no")]
    encoded, _ = encode_dataset(Dataset.from_list(probes, features=example_features()), stage.data, get_template(args.data.template), tokenizer, args.data)
    first, second = ([token for token in row["labels"] if token != IGNORE_INDEX] for row in encoded)
    alike = 0
    while alike < min(len(first), len(second)) and first[-1 - alike] == second[-1 - alike]:
        alike += 1
    return first[len(first) - alike :]


def without_end(row: dict[str, Any], end: list[int]) -> dict[str, Any]:
    """The row's per-token columns without the trailing end-of-turn ids (unchanged when it does not end in them)."""
    length = len(row["input_ids"])
    if not end or row["labels"][-len(end) :] != end:
        return {}
    return {key: value[: -len(end)] for key, value in row.items() if isinstance(value, list) and len(value) == length}


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


def starting_model_answers(prompts: list[str], model: Any, tokenizer: Any, args: TrainArgs) -> dict[str, Answer]:
    """Greedy answers of the model as training starts, cut to ANSWER_TOKENS; cached per model."""
    cache = glmtune_home() / "cache" / "replay" / f"{cache_key(args)}.json"
    known = shipped_answers(args) | (json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {})
    missing = [prompt for prompt in prompts if prompt not in known]
    if missing:
        logger.info("replay: the starting model answers %d general prompts (cached in %s)", len(missing), cache)
        known.update(generate(missing, model, tokenizer, args))
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache, json.dumps(known, ensure_ascii=False, indent=0))
    return {prompt: tuple(known[prompt]) for prompt in prompts}


def generate(prompts: list[str], model: Any, tokenizer: Any, args: TrainArgs) -> dict[str, Answer]:
    ordered = sorted(prompts, key=len)  # similar lengths batch with little padding
    settings = GeneratingArguments(do_sample=False, max_new_tokens=ANSWER_TOKENS, repetition_penalty=1.0)
    chat_model = ChatModel(model, tokenizer, get_template(args.data.template), settings, args.data.default_system)
    answers: dict[str, Answer] = {}
    with starting_model_context(model, args):
        for start in range(0, len(prompts), BATCH_SIZE):
            batch = ordered[start : start + BATCH_SIZE]
            replies = chat_model.batch_chat([[message("user", prompt)] for prompt in batch])
            answers.update((prompt, (reply.text.strip(), reply.finish_reason == "stop")) for prompt, reply in zip(batch, replies))
    return answers


def shipped_answers(args: TrainArgs) -> dict[str, list[Any]]:
    """The answers glmtune ships for the embedded default model, when training starts from it as published."""
    model = args.model.model_name_or_path or DEFAULT_MODEL_ALIAS
    name = SHIPPED_ANSWERS.get((model, args.data.template))
    if name is None or args.model.adapter_name_or_path or args.data.default_system:
        return {}
    return dict(packaged_json(name))


@contextmanager
def starting_model_context(model: Any, args: TrainArgs) -> Iterator[None]:
    """The starting model (see starting_model) in eval mode without gradients, run in the precision training resolved
    (as fast as it trains); training mode comes back after."""
    was_training, half = model.training, args.model.precision == "bf16"
    model.eval()
    try:
        with starting_model(model, args), torch.no_grad(), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=half):
            yield
    finally:
        model.train(was_training)


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
        "cut": "first tokens, ended or not",
        "prompts": hashlib.sha256(json.dumps(list(bundled_prompts()), ensure_ascii=False).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def reference_cache(args: TrainArgs) -> Path:
    """The folder keeping the restraint's reference log-probabilities of one starting model, as it is loaded (every
    model setting counts, and the method: an adapter run may hold the frozen weights in another dtype)."""
    inputs = {"replay": cache_key(args), "model": asdict(args.model), "method": args.finetuning.finetuning_type}
    return glmtune_home() / "cache" / "restraint" / hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:32]


def latest_change(path: Path) -> float | None:
    """When a local model or adapter last changed (None for a hub id or an alias)."""
    if path.is_file():
        return path.stat().st_mtime
    if path.is_dir():
        return max((item.stat().st_mtime for item in path.rglob("*") if item.is_file()), default=None)
    return None
