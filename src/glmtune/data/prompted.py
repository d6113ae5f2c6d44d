"""The prompted data shape: a prompt to answer by generation, with its reference answer, for GRPO.

The prompt is the conversation up to the last assistant header; the reference answer (the last
assistant turn, as text) is kept for reward functions that check a generated answer against it.
A prompt over cutoff_len keeps its end, where generation continues.
"""

from glmtune.data.row_encoding import EncodingOptions, RowEncoder, prompt_and_answer
from glmtune.data.schema import Example, LoadReport, Message
from glmtune.data.supervised import supervised_conversations
from glmtune.data.templates import EncodedTurn
from glmtune.data.truncation import over_cutoff


def prompted_sample(
    example: Example, conversations: list[list[EncodedTurn]], options: EncodingOptions, report: LoadReport | None
) -> dict[str, list[int] | str]:
    prompt, _ = prompt_and_answer(conversations[0])
    if over_cutoff(len(prompt), options, report):
        prompt = prompt[-options.cutoff_len :]
    answer: Message = example["messages"][-1]
    return {"prompt_ids": prompt, "answer": answer["content"]}


PROMPTED = RowEncoder("prompted", supervised_conversations, prompted_sample)
