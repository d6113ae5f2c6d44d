"""`glmtune data inspect NAME`: see exactly what a model will learn from before training on it.

Prints a few samples as the model receives them (rendered text and token ids) with the
tokens that carry loss marked, then token-length statistics and the load summary. Loss
tokens are coloured on a terminal and wrapped in ⟦ ⟧ elsewhere, so a piped or logged
output shows the same thing in plain text.
"""

import itertools
import math
import statistics
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from glmtune.data.schema import IGNORE_INDEX
from glmtune.errors import ConfigError

USAGE = (
    "glmtune data inspect NAME [--dataset_dir D] [--template T] [--model M] [-n 3] [--stage sft] "
    "[other data settings]"
)
LOSS_OPEN, LOSS_CLOSE = "⟦", "⟧"
LOSS_STYLE = "bold green"

Segment = tuple[str, bool]  # (text, carries loss)


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] != "inspect":
        problem = f"unknown data command {argv[0]!r}" if argv else "missing data command"
        raise ConfigError(f"{problem}: use `{USAGE}`")
    name, settings = split_dataset_name(list(argv[1:]))
    inspect_dataset(name, settings, sys.stdout)
    return 0


def split_dataset_name(argv: list[str]) -> tuple[str | None, list[str]]:
    """The dataset is the first bare word; everything after it is ordinary settings."""
    if argv and not argv[0].startswith("-") and "=" not in argv[0] and not argv[0].endswith((".yaml", ".yml")):
        return argv[0], argv[1:]
    return None, argv


def inspect_dataset(name: str | None, settings: Sequence[str], stream: TextIO, color: bool | None = None) -> None:
    """Load and encode as the stage's training would, then print; bad names fail before the tokenizer loads."""
    from glmtune.data.loader import load_examples
    from glmtune.data.shapes import encode_dataset
    from glmtune.data.templates import get_template
    from glmtune.data.tokenizer import load_tokenizer
    from glmtune.hparams.entry import get_inspect_args
    from glmtune.stages import get_stage

    inspect_args, model_args, data_args = get_inspect_args(settings, name)
    template = get_template(data_args.template)
    loaded = load_examples(data_args, inspect_args.stage)
    tokenizer = load_tokenizer(model_args)
    shape = get_stage(inspect_args.stage).data
    dataset, report = encode_dataset(loaded.train, shape, template, tokenizer, data_args)
    out = Output(stream, color)
    show_samples(out, tokenizer, dataset, inspect_args.num_samples)
    show_statistics(out, dataset)
    out.line(f"loading: {loaded.report.summary()}")
    out.line(f"preprocessing: {report.summary()}")
    if loaded.validation is not None:
        out.line(f"validation split: {len(loaded.validation)} rows (not shown)")


class Output:
    """Writes lines and marked segments: colour on a terminal, ⟦ ⟧ markers elsewhere."""

    def __init__(self, stream: TextIO, color: bool | None = None) -> None:
        self.stream = stream
        use_color = stream.isatty() if color is None else color
        self.console = None
        if use_color:
            from rich.console import Console

            self.console = Console(file=stream, force_terminal=True, highlight=False, soft_wrap=True)

    def line(self, text: str = "") -> None:
        if self.console is not None:
            self.console.print(text, markup=False)
        else:
            self.stream.write(text + "\n")

    def marked(self, segments: list[Segment], label: str = "") -> None:
        if self.console is None:
            self.stream.write(label + plain_marked(segments) + "\n")
            return
        from rich.text import Text

        text = Text(label)
        for piece, loss in segments:
            text.append(piece, style=LOSS_STYLE if loss else None)
        self.console.print(text)

    def legend(self) -> str:
        if self.console is not None:
            return f"tokens that carry loss are {LOSS_STYLE}"
        return f"tokens that carry loss are between {LOSS_OPEN} and {LOSS_CLOSE}"


def plain_marked(segments: list[Segment]) -> str:
    return "".join(f"{LOSS_OPEN}{piece}{LOSS_CLOSE}" if loss else piece for piece, loss in segments)


def sequence_columns(column_names: Sequence[str]) -> list[tuple[str, str | None]]:
    """(ids column, labels column) pairs: `input_ids` with `labels`; for pairs, the prompt carries no loss and each
    answer is learnt whole (its ids are its labels)."""
    pairs: list[tuple[str, str | None]] = []
    for column in column_names:
        if column == "input_ids":
            pairs.append((column, "labels" if "labels" in column_names else None))
        elif column == "prompt_ids":
            pairs.append((column, None))
        elif column.endswith("_ids") and column != "position_ids":
            pairs.append((column, column))
    return pairs


def loss_runs(input_ids: Sequence[int], labels: Sequence[int] | None) -> list[tuple[list[int], bool]]:
    """Split ids into runs that do or do not carry loss; with no labels no token does."""
    flags = [False] * len(input_ids) if labels is None else [label != IGNORE_INDEX for label in labels]
    runs = []
    for loss, group in itertools.groupby(zip(input_ids, flags), key=lambda pair: pair[1]):
        runs.append(([token for token, _ in group], loss))
    return runs


def text_segments(tokenizer: Any, runs: list[tuple[list[int], bool]]) -> list[Segment]:
    return [(tokenizer.decode(ids, skip_special_tokens=False), loss) for ids, loss in runs]


def id_segments(runs: list[tuple[list[int], bool]]) -> list[Segment]:
    """Space-separated ids; a space between runs stays outside the markers."""
    segments: list[Segment] = []
    for index, (ids, loss) in enumerate(runs):
        if index:
            segments.append((" ", False))
        segments.append((" ".join(map(str, ids)), loss))
    return segments


def show_samples(out: Output, tokenizer: Any, dataset: Any, count: int) -> None:
    shown = min(count, len(dataset))
    out.line(f"{len(dataset)} samples after preprocessing; showing {shown}; {out.legend()}")
    columns = sequence_columns(dataset.column_names)
    for index in range(shown):
        row = dataset[index]
        where = f" ({row['source']})" if row.get("source") else ""
        for ids_column, labels_column in columns:
            runs = loss_runs(row[ids_column], row[labels_column] if labels_column else None)
            carried = sum(len(ids) for ids, loss in runs if loss)
            kind = ids_column[: -len("_ids")] + " " if ids_column != "input_ids" else ""
            if ids_column == "completion_ids" and "label" in row:  # kto: whether this answer is one to learn or unlearn
                kind += "(desirable) " if row["label"] else "(undesirable) "
            out.line()
            out.line(f"── sample {index + 1}{where}: {kind}{len(row[ids_column])} tokens, {carried} carry loss ──")
            out.marked(text_segments(tokenizer, runs))
            out.marked(id_segments(runs), label="ids: ")


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile: always one of the observed values."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def length_statistics(lengths: Sequence[int]) -> str:
    values = sorted(lengths)
    if not values:
        return "no samples"
    median = statistics.median(values)
    return (
        f"min {values[0]}, median {median:g}, p95 {percentile(values, 0.95)}, max {values[-1]} "
        f"({len(values)} samples)"
    )


def loss_share(label_rows: Sequence[Sequence[int]], total: int) -> str:
    carried = sum(label != IGNORE_INDEX for labels in label_rows for label in labels)
    share = carried / total if total else 0.0
    return f"{carried} of {total} tokens carry loss ({share:.0%})"


def show_statistics(out: Output, dataset: Any) -> None:
    out.line()
    for ids_column, labels_column in sequence_columns(dataset.column_names):
        lengths = [len(ids) for ids in dataset[ids_column]]
        out.line(f"token lengths ({ids_column}): {length_statistics(lengths)}")
        if labels_column:
            out.line(f"loss ({labels_column}): {loss_share(dataset[labels_column], sum(lengths))}")
