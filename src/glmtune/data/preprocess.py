"""Examples -> model inputs: token ids, labels and lengths for each training stage.

Rows are encoded in batches by `Dataset.map` (in `preprocessing_num_workers` processes):
each row is laid out into its template's pieces, the whole batch's texts are tokenized in
one call, and then each row's sample is built from its turns.
A row that cannot become a sample leaves the map with its skip reason and location in
status columns, so every skip and truncation reaches the LoadReport, even from worker
processes; the status columns are dropped afterwards.
"""

import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from datasets import Dataset, Features, List, Value

from glmtune.data.schema import Example, LoadReport
from glmtune.data.templates import (
    ASSISTANT_SIDE,
    USER_SIDE,
    ChatFormat,
    EncodedTurn,
    Message,
    TurnPieces,
    encode_pieces,
)
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments

IGNORE_INDEX = -100  # cross-entropy ignores this label
# Every data argument this module reads; the cache key is built from them.
OUTPUT_ARGS = ("cutoff_len", "train_on_prompt", "mask_history", "skip_overlength", "packing", "default_system")
PACKING_BATCH_ROWS = 10_000  # samples packed together: more rows fill sequences better

SKIP, TRUNCATED, LOCATION = "_skip", "_truncated", "_location"
STATUS_COLUMNS = {SKIP: Value("string"), TRUNCATED: Value("bool"), LOCATION: Value("string")}
IDS = List(Value("int32"))
LENGTH = Value("int32")
SUPERVISED_COLUMNS = {"input_ids": IDS, "labels": IDS, "length": LENGTH}
PACKED_COLUMNS = {"input_ids": IDS, "labels": IDS, "position_ids": IDS, "length": LENGTH}
PAIRWISE_COLUMNS = {
    "chosen_input_ids": IDS,
    "chosen_labels": IDS,
    "rejected_input_ids": IDS,
    "rejected_labels": IDS,
    "length": LENGTH,
}
KTO_COLUMNS = {"input_ids": IDS, "labels": IDS, "kto_tag": Value("bool"), "length": LENGTH}
PROMPT_COLUMNS = {"input_ids": IDS, "length": LENGTH}


class SkipRow(Exception):
    """A row that cannot become a sample; the caller counts it under `reason` with its location."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RowEncoder:
    """A stage's encoding in two steps, so that a whole batch is tokenized in one call between them.

    name: what the progress bar shows.
    conversations: the conversations a row needs encoded; raises SkipRow for a row that cannot train.
    sample: the row's output columns from those conversations' turns.
    """

    name: str
    conversations: Callable[[Example], list[list[Message]]]
    sample: Callable[[Example, list[list[EncodedTurn]], DataArguments, LoadReport | None], dict[str, Any]]


def preprocess_dataset(
    dataset: Dataset, stage: str, template: ChatFormat, tokenizer: Any, data_args: DataArguments
) -> tuple[Dataset, LoadReport]:
    """Encode Examples for `stage`; the report counts rows read, kept, skipped (with where and why) and truncated."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    return STAGES[stage](dataset, template, tokenizer, data_args)


def encode_supervised(
    template: ChatFormat, tokenizer: Any, example: Example, data_args: DataArguments, report: LoadReport | None = None
) -> tuple[list[int], list[int]]:
    """input_ids and labels of one row, by the rule preprocessing applies to batches; raises SkipRow."""
    conversations = lay_out(SUPERVISED, template, tokenizer, example, data_args)
    sample = supervised_sample(example, encode_pieces(tokenizer, conversations), data_args, report)
    return sample["input_ids"], sample["labels"]


def lay_out(
    encoder: RowEncoder, template: ChatFormat, tokenizer: Any, example: Example, data_args: DataArguments
) -> list[list[TurnPieces]]:
    """The pieces of each conversation a row needs, with its system prompt (else `default_system`) and tools.

    A malformed conversation becomes a counted skip; a bad config still raises.
    """
    system = example.get("system")
    system = data_args.default_system if system is None else system
    try:
        return [
            template.pieces(tokenizer, messages, system, example.get("tools"))
            for messages in encoder.conversations(example)
        ]
    except ConfigError:
        raise
    except ValueError as error:
        raise SkipRow("invalid conversation", str(error)) from error


def supervised_conversations(example: Example) -> list[list[Message]]:
    messages = example.get("messages") or []
    if not messages:
        raise SkipRow("empty conversation")
    if messages[-1]["role"] not in ASSISTANT_SIDE:
        raise SkipRow("conversation ends without a response", f"last role {messages[-1]['role']!r}")
    check_responses(messages)
    return [messages]


def supervised_sample(
    example: Example, conversations: list[list[EncodedTurn]], data_args: DataArguments, report: LoadReport | None
) -> dict[str, list[int]]:
    """input_ids and labels of a conversation: the whole supervised masking rule.

    Loss goes on every assistant turn; prompt tokens get IGNORE_INDEX unless
    `train_on_prompt`; with `mask_history` only the last turn carries loss (and is kept
    first when the sample must be truncated). A sample over cutoff_len is truncated turn
    by turn (counted in `report`) or, with `skip_overlength`, skipped.
    """
    [turns] = conversations
    if over_cutoff(sum(len(prompt) + len(response) for prompt, response in turns), data_args, report):
        turns = fit_turns(turns, data_args.cutoff_len, last_first=data_args.mask_history)
    input_ids: list[int] = []
    labels: list[int] = []
    learned = 0
    last = len(turns) - 1
    for index, (prompt, response) in enumerate(turns):
        learn = not data_args.mask_history or index == last
        input_ids += prompt + response
        labels += prompt if learn and data_args.train_on_prompt else [IGNORE_INDEX] * len(prompt)
        labels += response if learn else [IGNORE_INDEX] * len(response)
        learned += len(response) if learn else 0
    if not learned:
        raise SkipRow("no response within cutoff_len", f"cutoff_len {data_args.cutoff_len}")
    return {"input_ids": input_ids, "labels": labels}


def pairwise_conversations(example: Example) -> list[list[Message]]:
    """The history once with the chosen answer and once with the rejected one."""
    chosen, rejected = example.get("chosen"), example.get("rejected")
    if not chosen or not rejected:
        raise SkipRow("no chosen/rejected pair")
    check_responses([chosen, rejected])
    history = prompt_history(example.get("messages") or [])
    return [[*history, chosen], [*history, rejected]]


def pairwise_sample(
    example: Example, conversations: list[list[EncodedTurn]], data_args: DataArguments, report: LoadReport | None
) -> dict[str, list[int]]:
    """Chosen and rejected answers after one shared prompt; loss on the answers only."""
    chosen_turns, rejected_turns = conversations
    prompt, chosen_ids = prompt_and_answer(chosen_turns)
    rejected_ids = rejected_turns[-1][1]
    longest = max(len(chosen_ids), len(rejected_ids))
    if over_cutoff(len(prompt) + longest, data_args, report):
        prompt_keep, answer_keep = split_budget(len(prompt), longest, data_args.cutoff_len)
        prompt, chosen_ids, rejected_ids = prompt[:prompt_keep], chosen_ids[:answer_keep], rejected_ids[:answer_keep]
    masked = [IGNORE_INDEX] * len(prompt)
    return {
        "chosen_input_ids": prompt + chosen_ids,
        "chosen_labels": masked + chosen_ids,
        "rejected_input_ids": prompt + rejected_ids,
        "rejected_labels": masked + rejected_ids,
    }


def kto_conversations(example: Example) -> list[list[Message]]:
    if example.get("kto_tag") is None:
        raise SkipRow("no kto_tag")
    messages = example.get("messages") or []
    if not messages or messages[-1]["role"] not in ASSISTANT_SIDE:
        raise SkipRow("conversation ends without a response")
    check_responses(messages[-1:])
    return [[*prompt_history(messages[:-1]), messages[-1]]]


def kto_sample(
    example: Example, conversations: list[list[EncodedTurn]], data_args: DataArguments, report: LoadReport | None
) -> dict[str, list[int] | bool]:
    """One answer with its desirable/undesirable tag (KTO); loss on the last answer only."""
    prompt, answer = prompt_and_answer(conversations[0])
    if over_cutoff(len(prompt) + len(answer), data_args, report):
        prompt_keep, answer_keep = split_budget(len(prompt), len(answer), data_args.cutoff_len)
        prompt, answer = prompt[:prompt_keep], answer[:answer_keep]
    labels = [IGNORE_INDEX] * len(prompt) + answer
    return {"input_ids": prompt + answer, "labels": labels, "kto_tag": example["kto_tag"]}


def prompt_only_conversations(example: Example) -> list[list[Message]]:
    """A query for PPO rollouts: the conversation up to its last user turn."""
    messages = example.get("messages") or []
    if messages and messages[-1]["role"] in ASSISTANT_SIDE:
        messages = messages[:-1]  # a reference answer is no part of a rollout query
    if not messages:
        raise SkipRow("empty conversation")
    return [messages]


def prompt_only_sample(
    example: Example, conversations: list[list[EncodedTurn]], data_args: DataArguments, report: LoadReport | None
) -> dict[str, list[int]]:
    """The query's ids, ending on the assistant header."""
    input_ids = flatten(conversations[0])
    if over_cutoff(len(input_ids), data_args, report):
        input_ids = input_ids[-data_args.cutoff_len :]  # keep the end: generation continues from it
    return {"input_ids": input_ids}


SUPERVISED = RowEncoder("supervised", supervised_conversations, supervised_sample)
PAIRWISE = RowEncoder("pairwise", pairwise_conversations, pairwise_sample)
KTO = RowEncoder("kto", kto_conversations, kto_sample)
PROMPT_ONLY = RowEncoder("prompts", prompt_only_conversations, prompt_only_sample)


def check_responses(messages: list[Message]) -> None:
    for index, message in enumerate(messages):
        if message["role"] in ASSISTANT_SIDE and not (message.get("content") or "").strip():
            raise SkipRow("empty response", f"message {index}")


def prompt_history(messages: list[Message]) -> list[Message]:
    """Everything before an answer, which must end on a user-side turn."""
    if not messages or messages[-1]["role"] not in USER_SIDE:
        raise SkipRow("conversation must end on a user turn before the answer")
    return messages


def prompt_and_answer(turns: list[EncodedTurn]) -> tuple[list[int], list[int]]:
    """Ids of everything before the final answer, and of the answer itself."""
    *history, (last_prompt, answer_ids) = turns
    return flatten(history) + last_prompt, answer_ids


def flatten(turns: list[EncodedTurn]) -> list[int]:
    ids: list[int] = []
    for prompt, response in turns:
        ids += prompt + response
    return ids


def over_cutoff(total: int, data_args: DataArguments, report: LoadReport | None) -> bool:
    """True when a sample must be truncated (counted); raises SkipRow instead under skip_overlength."""
    if total <= data_args.cutoff_len:
        return False
    if data_args.skip_overlength:
        raise SkipRow("longer than cutoff_len", f"{total} tokens > {data_args.cutoff_len}")
    if report is not None:
        report.truncated += 1
    return True


def split_budget(prompt_len: int, response_len: int, budget: int) -> tuple[int, int]:
    """How many prompt and response tokens fit in `budget`.

    A part no longer than half the budget stays whole and the other part gets the rest;
    two long parts share the budget in proportion to their lengths.
    """
    if prompt_len + response_len <= budget:
        return prompt_len, response_len
    half = budget // 2
    if response_len <= half:
        return budget - response_len, response_len
    if prompt_len <= half:
        return prompt_len, budget - prompt_len
    response_keep = budget * response_len // (prompt_len + response_len)
    return budget - response_keep, response_keep


def fit_turns(turns: list[EncodedTurn], cutoff_len: int, last_first: bool) -> list[EncodedTurn]:
    """Truncate each turn's prompt and response in proportion until cutoff_len is spent.

    Turns are served in order (the last one first with `last_first`); once no response
    token fits, the remaining turns are dropped. Each part keeps its beginning.
    """
    order = range(len(turns) - 1, -1, -1) if last_first else range(len(turns))
    budget = cutoff_len
    kept: dict[int, EncodedTurn] = {}
    for index in order:
        prompt, response = turns[index]
        prompt_keep, response_keep = split_budget(len(prompt), len(response), budget)
        if response_keep == 0:
            break
        kept[index] = (prompt[:prompt_keep], response[:response_keep])
        budget -= prompt_keep + response_keep
    return [kept[index] for index in sorted(kept)]


def rows(batch: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    names = list(batch)
    for values in zip(*batch.values()):
        yield dict(zip(names, values))


def encode_batch(
    batch: dict[str, list[Any]],
    indices: list[int],
    encoder: RowEncoder,
    outputs: tuple[str, ...],
    template: ChatFormat,
    tokenizer: Any,
    data_args: DataArguments,
) -> dict[str, list[Any]]:
    """Lay out every row of a batch, tokenize all their texts in one call, then build each row's sample.

    Skipped rows stay (with null outputs) so their reason reaches the report.
    """
    examples = list(rows(batch))
    laid_out: list[list[list[TurnPieces]] | SkipRow] = []
    for example in examples:
        try:
            laid_out.append(lay_out(encoder, template, tokenizer, example, data_args))
        except SkipRow as skip:
            laid_out.append(skip)
    conversations = [conversation for row in laid_out if not isinstance(row, SkipRow) for conversation in row]
    encoded = iter(encode_pieces(tokenizer, conversations))
    output: dict[str, list[Any]] = {name: [] for name in (*outputs, SKIP, TRUNCATED, LOCATION)}
    report = LoadReport()
    for index, example, row in zip(indices, examples, laid_out):
        location = example.get("source") or f"row {index}"
        truncated_before = report.truncated
        try:
            if isinstance(row, SkipRow):
                raise row
            sample = encoder.sample(example, [next(encoded) for _ in row], data_args, report)
            sample["length"] = max(len(ids) for name, ids in sample.items() if name.endswith("input_ids"))
            reason = ""
        except SkipRow as skip:
            sample, reason = dict.fromkeys(outputs), skip.reason
            location = f"{location} ({skip.detail})" if skip.detail else location
        for name in outputs:
            output[name].append(sample[name])
        output[SKIP].append(reason)
        output[TRUNCATED].append(report.truncated > truncated_before)
        output[LOCATION].append(location)
    return output


def map_rows(
    dataset: Dataset,
    function: Callable[..., dict[str, list[Any]]],
    columns: dict[str, Any],
    data_args: DataArguments,
    description: str,
    fn_kwargs: dict[str, Any],
) -> tuple[Dataset, LoadReport]:
    """Run a batched map that emits status columns, count them, and keep only the samples."""
    mapped = dataset.map(
        function,
        batched=True,
        with_indices=True,
        num_proc=data_args.preprocessing_num_workers,
        remove_columns=dataset.column_names,
        features=Features({**columns, **STATUS_COLUMNS}),
        fn_kwargs=fn_kwargs,
        desc=description,
    )
    return keep_samples(mapped, read=len(dataset))


def keep_samples(mapped: Dataset, read: int) -> tuple[Dataset, LoadReport]:
    status = mapped.select_columns(list(STATUS_COLUMNS)).to_dict()
    report = LoadReport(read=read, truncated=sum(status[TRUNCATED]))
    kept = []
    for index, (reason, location) in enumerate(zip(status[SKIP], status[LOCATION])):
        if reason:
            report.skip(reason, location)
        else:
            kept.append(index)
    report.kept = read - sum(report.skipped.values())
    if len(kept) < len(mapped):
        mapped = mapped.select(kept)
    return mapped.remove_columns(list(STATUS_COLUMNS)), report


def encode_rows(
    dataset: Dataset,
    encoder: RowEncoder,
    columns: dict[str, Any],
    template: ChatFormat,
    tokenizer: Any,
    data_args: DataArguments,
) -> tuple[Dataset, LoadReport]:
    return map_rows(
        dataset,
        encode_batch,
        columns,
        data_args,
        f"encoding ({encoder.name})",
        {
            "encoder": encoder,
            "outputs": tuple(columns),
            "template": template,
            "tokenizer": tokenizer,
            "data_args": data_args,
        },
    )


def unsupervised_batch(
    batch: dict[str, list[Any]], indices: list[int], tokenizer: Any, cutoff_len: int
) -> dict[str, list[Any]]:
    """Tokenize texts in one call, join them with eos and cut the stream into cutoff_len blocks."""
    texts = batch["text"]
    kept = [position for position, text in enumerate(texts) if text and text.strip()]
    stream: list[int] = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if kept:
        for ids in tokenizer([texts[position] for position in kept], add_special_tokens=False)["input_ids"]:
            stream += ids + eos
    blocks = [stream[start : start + cutoff_len] for start in range(0, len(stream), cutoff_len)]
    kept_set = set(kept)
    skipped = [position for position in range(len(texts)) if position not in kept_set]
    sources = batch.get("source") or [None] * len(texts)
    locations = [sources[position] or f"row {indices[position]}" for position in skipped]
    nulls = [None] * len(skipped)
    return {
        "input_ids": blocks + nulls,
        "labels": blocks + nulls,
        "length": [len(block) for block in blocks] + nulls,
        SKIP: [""] * len(blocks) + ["empty text"] * len(skipped),
        TRUNCATED: [False] * (len(blocks) + len(skipped)),
        LOCATION: [""] * len(blocks) + locations,
    }


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Group sample indices into bins of at most `capacity` tokens.

    Longest samples first, each into the fullest bin it fits: few bins, little padding.
    """
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted by room
    bins: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True):
        length = lengths[index]
        slot = bisect.bisect_left(free, (length, -1))
        if slot == len(free):
            bins.append([index])
            room, where = capacity - length, len(bins) - 1
        else:
            room, where = free.pop(slot)
            bins[where].append(index)
            room -= length
        if room > 0:
            bisect.insort(free, (room, where))
    return [sorted(members) for members in bins]


def pack_batch(batch: dict[str, list[Any]], capacity: int) -> dict[str, list[Any]]:
    """Pack samples into rows; position_ids restart at 0 for each sample so attention stays within it."""
    lengths = [len(ids) for ids in batch["input_ids"]]
    output: dict[str, list[Any]] = {name: [] for name in PACKED_COLUMNS}
    for members in best_fit_decreasing(lengths, capacity):
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for index in members:
            input_ids += batch["input_ids"][index]
            # A sample's first label is the target of the previous token, which belongs to another sample.
            labels += [IGNORE_INDEX] + batch["labels"][index][1:]
            position_ids += range(lengths[index])
        output["input_ids"].append(input_ids)
        output["labels"].append(labels)
        output["position_ids"].append(position_ids)
        output["length"].append(len(input_ids))
    return output


def pack_supervised(dataset: Dataset, data_args: DataArguments) -> Dataset:
    return dataset.map(
        pack_batch,
        batched=True,
        batch_size=PACKING_BATCH_ROWS,
        num_proc=data_args.preprocessing_num_workers,
        remove_columns=dataset.column_names,
        features=Features(PACKED_COLUMNS),
        fn_kwargs={"capacity": data_args.cutoff_len},
        desc="packing",
    )


def preprocess_supervised(
    dataset: Dataset, template: ChatFormat, tokenizer: Any, data_args: DataArguments
) -> tuple[Dataset, LoadReport]:
    encoded, report = encode_rows(dataset, SUPERVISED, SUPERVISED_COLUMNS, template, tokenizer, data_args)
    return (pack_supervised(encoded, data_args) if data_args.packing else encoded), report


def preprocess_pairwise(
    dataset: Dataset, template: ChatFormat, tokenizer: Any, data_args: DataArguments
) -> tuple[Dataset, LoadReport]:
    return encode_rows(dataset, PAIRWISE, PAIRWISE_COLUMNS, template, tokenizer, data_args)


def preprocess_kto(
    dataset: Dataset, template: ChatFormat, tokenizer: Any, data_args: DataArguments
) -> tuple[Dataset, LoadReport]:
    return encode_rows(dataset, KTO, KTO_COLUMNS, template, tokenizer, data_args)


def preprocess_prompts(
    dataset: Dataset, template: ChatFormat, tokenizer: Any, data_args: DataArguments
) -> tuple[Dataset, LoadReport]:
    return encode_rows(dataset, PROMPT_ONLY, PROMPT_COLUMNS, template, tokenizer, data_args)


def preprocess_unsupervised(
    dataset: Dataset, template: ChatFormat, tokenizer: Any, data_args: DataArguments
) -> tuple[Dataset, LoadReport]:
    """Pre-training needs no template: the texts are the training signal, labels equal input_ids."""
    return map_rows(
        dataset,
        unsupervised_batch,
        SUPERVISED_COLUMNS,
        data_args,
        "tokenizing texts",
        {"tokenizer": tokenizer, "cutoff_len": data_args.cutoff_len},
    )


STAGES: dict[str, Callable[[Dataset, ChatFormat, Any, DataArguments], tuple[Dataset, LoadReport]]] = {
    "pt": preprocess_unsupervised,
    "sft": preprocess_supervised,
    "rm": preprocess_pairwise,
    "dpo": preprocess_pairwise,
    "kto": preprocess_kto,
    "ppo": preprocess_prompts,
}
