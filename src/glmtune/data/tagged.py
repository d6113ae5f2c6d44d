"""The tagged data shape: one answer marked desirable or undesirable (LLaMA-Factory's `kto_tag`), for KTO.

The prompt is the conversation before the last assistant turn; the completion is that turn. A
sample over cutoff_len keeps the beginning of both, sharing the budget as for pairs.
"""

from glmtune.data.row_encoding import (
    EncodingOptions,
    RowEncoder,
    SkipRow,
    prompt_and_answer,
)
from glmtune.data.schema import Example, LoadReport, Message
from glmtune.data.supervised import supervised_conversations
from glmtune.data.templates import EncodedTurn
from glmtune.data.truncation import cut_prompt_and_answers


def tagged_conversations(example: Example) -> list[list[Message]]:
    if example.get("kto_tag") is None:
        raise SkipRow("no kto_tag (true: a desirable answer, false: an undesirable one)")
    return supervised_conversations(example)


def tagged_sample(
    example: Example, conversations: list[list[EncodedTurn]], options: EncodingOptions, report: LoadReport | None
) -> dict[str, list[int] | bool]:
    """prompt_ids, completion_ids and label: the columns TRL's KTO trainer reads."""
    prompt, completion = prompt_and_answer(conversations[0])
    prompt, (completion,) = cut_prompt_and_answers(prompt, [completion], options, report)
    return {"prompt_ids": prompt, "completion_ids": completion, "label": bool(example["kto_tag"])}


TAGGED = RowEncoder("tagged", tagged_conversations, tagged_sample)
