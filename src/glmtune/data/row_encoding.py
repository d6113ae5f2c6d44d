"""The plumbing every data shape's encoder shares: batched maps whose skipped rows are counted.

Rows are encoded in batches by `Dataset.map` (in `preprocessing_num_workers` processes):
each row is laid out into its template's pieces, the whole batch's texts are tokenized in
one call, and then each row's sample is built from its turns. A row that cannot become a
sample leaves the map with its skip reason and location in status columns, so every skip and
truncation reaches the LoadReport, even from worker processes; the status columns are
dropped afterwards.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from datasets import Dataset, Features, Value

from glmtune.data.schema import Example, LoadReport, Message
from glmtune.data.templates import ChatFormat, EncodedTurn, TurnPieces, encode_pieces
from glmtune.errors import ConfigError

SKIP, TRUNCATED, LOCATION = "_skip", "_truncated", "_location"
STATUS_COLUMNS = {SKIP: Value("string"), TRUNCATED: Value("bool"), LOCATION: Value("string")}


@dataclass(frozen=True)
class EncodingOptions:
    """The data settings that decide encoded samples: encoders read only these, and the cache key hashes them all."""

    cutoff_len: int
    train_on_prompt: bool = False
    mask_history: bool = False
    skip_overlength: bool = False
    packing: bool = False
    default_system: str | None = None

    @classmethod
    def from_args(cls, data_args: Any) -> "EncodingOptions":
        return cls(**{f.name: getattr(data_args, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class EncodingJob:
    """What encoding a dataset needs besides the rows: the template, the tokenizer, the options, the workers."""

    template: ChatFormat
    tokenizer: Any
    options: EncodingOptions
    num_proc: int | None = None


class SkipRow(Exception):
    """A row that cannot become a sample; the caller counts it under `reason` with its location."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RowEncoder:
    """A data shape's encoding in two steps, so that a whole batch is tokenized in one call between them.

    name: what the progress bar shows.
    conversations: the conversations a row needs encoded; raises SkipRow for a row that cannot train.
    sample: the row's output columns from those conversations' turns.
    """

    name: str
    conversations: Callable[[Example], list[list[Message]]]
    sample: Callable[[Example, list[list[EncodedTurn]], EncodingOptions, LoadReport | None], dict[str, Any]]


def lay_out(
    encoder: RowEncoder, template: ChatFormat, tokenizer: Any, example: Example, options: EncodingOptions
) -> list[list[TurnPieces]]:
    """The pieces of each conversation a row needs, with its system prompt (else `default_system`) and tools.

    A malformed conversation becomes a counted skip; a bad config still raises.
    """
    system = example.get("system")
    system = options.default_system if system is None else system
    try:
        return [
            template.pieces(tokenizer, messages, system, example.get("tools"))
            for messages in encoder.conversations(example)
        ]
    except ConfigError:
        raise
    except ValueError as error:
        raise SkipRow("invalid conversation", str(error)) from error


def prompt_and_answer(turns: list[EncodedTurn]) -> tuple[list[int], list[int]]:
    """Ids of everything before a conversation's last answer, and of that answer."""
    *history, (last_prompt, answer) = turns
    return [token for prompt, response in history for token in prompt + response] + last_prompt, answer


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
    options: EncodingOptions,
) -> dict[str, list[Any]]:
    """Lay out every row of a batch, tokenize all their texts in one call, then build each row's sample.

    Skipped rows stay (with null outputs) so their reason reaches the report.
    """
    examples = list(rows(batch))
    laid_out: list[list[list[TurnPieces]] | SkipRow] = []
    for example in examples:
        try:
            laid_out.append(lay_out(encoder, template, tokenizer, example, options))
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
            sample = encoder.sample(example, [next(encoded) for _ in row], options, report)
            sample["length"] = sample_length(sample)
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


def sample_length(sample: dict[str, Any]) -> int:
    """Tokens of a sample's longest sequence: a prompt counts with each answer that follows it."""
    prompt = len(sample.get("prompt_ids") or [])
    return max(len(ids) + (prompt if name != "prompt_ids" else 0) for name, ids in sample.items() if name.endswith("ids"))


def map_rows(
    dataset: Dataset,
    function: Callable[..., dict[str, list[Any]]],
    columns: dict[str, Any],
    num_proc: int | None,
    description: str,
    fn_kwargs: dict[str, Any],
) -> tuple[Dataset, LoadReport]:
    """Run a batched map that emits status columns, count them, and keep only the samples."""
    mapped = dataset.map(
        function,
        batched=True,
        with_indices=True,
        num_proc=num_proc,
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
    dataset: Dataset, encoder: RowEncoder, columns: dict[str, Any], job: EncodingJob
) -> tuple[Dataset, LoadReport]:
    """Encode every row with `encoder` into `columns`, counting skips and truncations."""
    fn_kwargs = {"encoder": encoder, "outputs": tuple(columns), "template": job.template, "tokenizer": job.tokenizer,
                 "options": job.options}  # fmt: skip
    return map_rows(dataset, encode_batch, columns, job.num_proc, f"encoding ({encoder.name})", fn_kwargs)
