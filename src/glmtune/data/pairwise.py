"""The pairwise data shape: one prompt with a chosen and a rejected answer (reward models, preference tuning).

Both answers follow the same prompt, laid out by the template as the conversation's last
assistant turn. A pair over cutoff_len keeps the beginning of the prompt and of each answer,
the budget shared as for supervised samples, so both answers are cut at the same length.
"""

from glmtune.data.row_encoding import (
    EncodingOptions,
    RowEncoder,
    SkipRow,
    prompt_and_answer,
)
from glmtune.data.schema import ASSISTANT_SIDE, USER_SIDE, Example, LoadReport, Message
from glmtune.data.templates import EncodedTurn
from glmtune.data.truncation import cut_prompt_and_answers


def pairwise_conversations(example: Example) -> list[list[Message]]:
    """The history once with the chosen answer and once with the rejected one."""
    chosen, rejected = example.get("chosen"), example.get("rejected")
    if not chosen or not rejected:
        raise SkipRow("no chosen/rejected pair")
    for name, answer in (("chosen", chosen), ("rejected", rejected)):
        if answer["role"] not in ASSISTANT_SIDE or not (answer.get("content") or "").strip():
            raise SkipRow("empty response", name)
    history = example.get("messages") or []
    if not history or history[-1]["role"] not in USER_SIDE:
        raise SkipRow("conversation must end on a user turn before the answer")
    return [[*history, chosen], [*history, rejected]]


def pairwise_sample(
    example: Example, conversations: list[list[EncodedTurn]], options: EncodingOptions, report: LoadReport | None
) -> dict[str, list[int]]:
    """prompt_ids, and the ids of each answer after it: the columns TRL's preference trainers read."""
    chosen_turns, rejected_turns = conversations
    prompt, chosen = prompt_and_answer(chosen_turns)
    prompt, (chosen, rejected) = cut_prompt_and_answers(prompt, [chosen, rejected_turns[-1][1]], options, report)
    return {"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected}


PAIRWISE = RowEncoder("pairwise", pairwise_conversations, pairwise_sample)
