"""Keep sampling alive when a model emits NaN or infinite logits.

Half-precision ChatGLM checkpoints are known to overflow into NaN/inf logits, which makes
`torch.multinomial` raise "probability tensor contains either inf, nan or element < 0".
Affected rows fall back to greedy decoding over their finite logits, with a warning.
"""

import logging

import torch
from transformers import LogitsProcessor

logger = logging.getLogger(__name__)


class GreedyOnInvalidLogits(LogitsProcessor):
    """Replace each row holding NaN/+inf (or only -inf) by a one-hot choice of its best finite token.

    transformers runs custom processors before temperature/top-k/top-p, and a row of
    0 and -inf survives those warpers unchanged, so sampling then picks that token.
    """

    def __init__(self, fallback_token_id: int) -> None:
        self.fallback_token_id = fallback_token_id
        self.warned = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        invalid = torch.isnan(scores) | torch.isposinf(scores)
        broken_rows = invalid.any(dim=-1) | torch.isneginf(scores).all(dim=-1)
        if not broken_rows.any():
            return scores
        if not self.warned:
            logger.warning("the model produced NaN/inf logits; decoding those steps greedily instead of sampling")
            self.warned = True
        finite_max = torch.finfo(scores.dtype).max
        cleaned = torch.nan_to_num(scores[broken_rows], nan=float("-inf"), posinf=finite_max)
        best = cleaned.argmax(dim=-1)
        best[torch.isneginf(cleaned).all(dim=-1)] = self.fallback_token_id
        one_hot = torch.full_like(cleaned, float("-inf"))
        one_hot.scatter_(-1, best.unsqueeze(-1), 0.0)
        scores = scores.clone()
        scores[broken_rows] = one_hot
        return scores
