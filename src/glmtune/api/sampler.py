"""Pick every sequence's next token in one go, each with its own temperature, top-k, top-p and seed.

Sequences with different settings share one forward pass, so the warpers work on per-row
parameter tensors. Only the uniform draw is made row by row, from the row's own
`torch.Generator`: a seeded request then gets the same tokens whatever shares its batch.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float  # 0 decodes greedily
    top_p: float
    top_k: int  # 0 keeps the whole vocabulary
    repetition_penalty: float
    generator: torch.Generator
    presence_penalty: float = 0.0  # OpenAI's: subtracted once from every token already generated
    frequency_penalty: float = 0.0  # OpenAI's: subtracted per occurrence in the generated tokens
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit

    @property
    def adjusts_logits(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.logit_bias)


def penalize_repeats(
    logits: torch.Tensor, histories: Sequence[list[int]], params: Sequence[SamplingParams]
) -> torch.Tensor:
    """transformers' repetition penalty (CTRL paper), applied to the few rows that ask for it."""
    for row, (history, setting) in enumerate(zip(histories, params)):
        if setting.repetition_penalty != 1.0 and history:
            ids = torch.tensor(history, device=logits.device)
            seen = logits[row, ids]
            penalty = setting.repetition_penalty
            logits[row, ids] = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits


def adjust_logits(
    logits: torch.Tensor, generated: Sequence[list[int]], params: Sequence[SamplingParams]
) -> torch.Tensor:
    """OpenAI's presence and frequency penalties over each row's generated tokens, then its logit_bias."""
    vocab = logits.shape[-1]
    for row, (tokens, setting) in enumerate(zip(generated, params)):
        if tokens and (setting.presence_penalty or setting.frequency_penalty):
            ids, counts = torch.tensor(tokens, device=logits.device).unique(return_counts=True)
            logits[row, ids] -= setting.frequency_penalty * counts + setting.presence_penalty
        biased = [(token, bias) for token, bias in setting.logit_bias.items() if token < vocab]
        if biased:
            ids = torch.tensor([token for token, _ in biased], device=logits.device)
            logits[row, ids] += torch.tensor([bias for _, bias in biased], device=logits.device, dtype=logits.dtype)
    return logits


def sample_next_tokens(logits: torch.Tensor, params: Sequence[SamplingParams]) -> torch.Tensor:
    """Next token per row of `logits` [rows, vocab]: argmax for greedy rows, else temperature, top-k, top-p, draw."""
    logits = logits.float()
    greedy_choice = logits.argmax(dim=-1)
    sampled_rows = [row for row, setting in enumerate(params) if setting.temperature > 0]
    if not sampled_rows:
        return greedy_choice
    picked = [params[row] for row in sampled_rows]
    vocab = logits.shape[-1]
    device = logits.device
    temperature = torch.tensor([setting.temperature for setting in picked], device=device)
    top_k = torch.tensor([setting.top_k or vocab for setting in picked], device=device)
    top_p = torch.tensor([setting.top_p for setting in picked], device=device)
    # Only the largest top_k candidates can survive, so a partial sort is enough when every row has a top_k.
    width = int(top_k.max().clamp(max=vocab))
    values, order = (logits[sampled_rows] / temperature[:, None]).topk(width, dim=-1)
    dropped = torch.arange(width, device=device)[None, :] >= top_k[:, None]
    probs = values.masked_fill(dropped, float("-inf")).softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    probs = probs.masked_fill(dropped | (mass_before >= top_p[:, None]), 0.0)
    cumulative = probs.cumsum(dim=-1)
    draws = torch.cat([torch.rand(1, generator=setting.generator, device=device) for setting in picked])
    positions = torch.searchsorted(cumulative, (draws * cumulative[:, -1])[:, None]).clamp(max=width - 1)
    chosen = greedy_choice.clone()
    chosen[sampled_rows] = order.gather(-1, positions).squeeze(-1)
    return chosen
