"""Fitting samples into cutoff_len: how many prompt and response tokens survive, and counting it.

A sample over the budget is truncated (counted in the report) or, with `skip_overlength`,
skipped with its reason; each part keeps its beginning.
"""

from glmtune.data.row_encoding import EncodingOptions, SkipRow
from glmtune.data.schema import LoadReport
from glmtune.data.templates import EncodedTurn


def over_cutoff(total: int, options: EncodingOptions, report: LoadReport | None) -> bool:
    """True when a sample must be truncated (counted); raises SkipRow instead under skip_overlength."""
    if total <= options.cutoff_len:
        return False
    if options.skip_overlength:
        raise SkipRow("longer than cutoff_len", f"{total} tokens > {options.cutoff_len}")
    if report is not None:
        report.truncated += 1
    return True


def cut_prompt_and_answers(
    prompt: list[int], answers: list[list[int]], options: EncodingOptions, report: LoadReport | None
) -> tuple[list[int], list[list[int]]]:
    """A prompt and the answers that may follow it, cut to cutoff_len as one sample (every answer to one length)."""
    longest = max(len(answer) for answer in answers)
    if not over_cutoff(len(prompt) + longest, options, report):
        return prompt, answers
    prompt_keep, answer_keep = split_budget(len(prompt), longest, options.cutoff_len)
    return prompt[:prompt_keep], [answer[:answer_keep] for answer in answers]


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
