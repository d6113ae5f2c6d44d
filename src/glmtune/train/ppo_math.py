"""The arithmetic of PPO for language models, on [rows, answer tokens] tensors with a mask of real tokens.

Rewards are per token: minus the KL penalty to the reference at every token, plus the reward
model's (or reward functions') score at the answer's last token. Advantages come from GAE over
the value head's estimates; the policy and value losses are PPO's clipped ones (Schulman et al.
2017; per-token KL and its adaptive weight after Ziegler et al. 2019). Kept apart from the
trainer so the math is tested on hand-computed examples.
"""

from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit variance over the real tokens; padding stays 0."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(variance + 1e-8) * mask


def token_rewards(
    scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (-kl_coef x KL estimate, plus the score on each answer's last token) and the KL estimates."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = mask.sum(dim=1).long() - 1
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards, kl


def advantages_and_returns(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and the returns the value head learns (advantage + value), 0 past each answer's end."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for step in reversed(range(rewards.shape[1])):
        next_value = values[:, step + 1] if step + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, step] + gamma * next_value - values[:, step]
        running = delta + gamma * lam * running
        advantages[:, step] = running
    return advantages * mask, (advantages + values) * mask


@dataclass
class LossParts:
    loss: torch.Tensor
    clip_fraction: torch.Tensor  # share of tokens where clipping took effect
    approx_kl: torch.Tensor  # how far this update moved the policy from the one that generated


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float
) -> LossParts:
    """PPO's clipped surrogate: the worse of the plain and the clipped ratio times the advantage."""
    ratio = torch.exp(logprobs - old_logprobs)
    plain, clipped = -advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    return LossParts(
        loss=masked_mean(torch.maximum(plain, clipped), mask),
        clip_fraction=masked_mean((clipped > plain).float(), mask),
        approx_kl=0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask),
    )


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> LossParts:
    """Squared error to the returns, with the new estimate kept within `clip` of the old one (the worse of both)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    plain_error, clipped_error = (values - returns) ** 2, (clipped - returns) ** 2
    return LossParts(
        loss=0.5 * masked_mean(torch.maximum(plain_error, clipped_error), mask),
        clip_fraction=masked_mean((clipped_error > plain_error).float(), mask),
        approx_kl=torch.zeros((), device=values.device),
    )


class AdaptiveKLController:
    """The KL penalty's weight, nudged each step so the policy's KL to the reference tracks `target` (0: fixed)."""

    def __init__(self, value: float, target: float, horizon: int = 10_000) -> None:
        self.value, self.target, self.horizon = value, target, horizon

    def update(self, current_kl: float, steps: int) -> None:
        if self.target <= 0:
            return
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * steps / self.horizon
