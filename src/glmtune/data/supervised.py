"""The supervised data shape: conversations -> input_ids and labels, the whole loss-masking rule.

Loss goes on every assistant turn; prompt tokens get IGNORE_INDEX unless `train_on_prompt`;
with `mask_history` only the last turn carries loss (and is kept first when the sample must
be truncated). A sample over cutoff_len is truncated turn by turn (counted) or, with
`skip_overlength`, skipped.
"""

from glmtune.data.row_encoding import EncodingOptions, RowEncoder, SkipRow
from glmtune.data.schema import (
    ASSISTANT_SIDE,
    IGNORE_INDEX,
    Example,
    LoadReport,
    Message,
)
from glmtune.data.templates import EncodedTurn
from glmtune.data.truncation import fit_turns, over_cutoff


def supervised_conversations(example: Example) -> list[list[Message]]:
    messages = example.get("messages") or []
    if not messages:
        raise SkipRow("empty conversation")
    if messages[-1]["role"] not in ASSISTANT_SIDE:
        raise SkipRow("conversation ends without a response", f"last role {messages[-1]['role']!r}")
    for index, message in enumerate(messages):
        if message["role"] in ASSISTANT_SIDE and not (message.get("content") or "").strip():
            raise SkipRow("empty response", f"message {index}")
    return [messages]


def supervised_sample(
    example: Example, conversations: list[list[EncodedTurn]], options: EncodingOptions, report: LoadReport | None
) -> dict[str, list[int]]:
    """input_ids and labels of one conversation (see the module docstring for the rule)."""
    [turns] = conversations
    if over_cutoff(sum(len(prompt) + len(response) for prompt, response in turns), options, report):
        turns = fit_turns(turns, options.cutoff_len, last_first=options.mask_history)
    input_ids: list[int] = []
    labels: list[int] = []
    learned = 0
    last = len(turns) - 1
    for index, (prompt, response) in enumerate(turns):
        learn = not options.mask_history or index == last
        input_ids += prompt + response
        labels += prompt if learn and options.train_on_prompt else [IGNORE_INDEX] * len(prompt)
        labels += response if learn else [IGNORE_INDEX] * len(response)
        learned += len(response) if learn else 0
    if not learned:
        raise SkipRow("no response within cutoff_len", f"cutoff_len {options.cutoff_len}")
    return {"input_ids": input_ids, "labels": labels}


SUPERVISED = RowEncoder("supervised", supervised_conversations, supervised_sample)

