"""PPO's arithmetic against examples worked by hand."""

import pytest
import torch

from glmtune.train.ppo_math import (
    AdaptiveKLController,
    advantages_and_returns,
    masked_whiten,
    policy_loss,
    token_rewards,
    value_loss,
)

# Row 0: a 3-token answer; row 1: a 2-token answer padded to 3.
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_token_rewards_are_the_kl_penalty_with_the_score_on_the_last_token():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -9.0]])
    ref_logprobs = torch.tensor([[-1.5, -2.0, -1.0], [-0.5, -1.0, -3.0]])
    rewards, kl = token_rewards(torch.tensor([1.0, -2.0]), logprobs, ref_logprobs, MASK, kl_coef=0.2)
    assert torch.allclose(kl, torch.tensor([[0.5, 0.0, 0.5], [-0.5, 0.0, 0.0]]))
    # -0.2 x kl everywhere; the score lands on each answer's own last token, never on padding
    assert torch.allclose(rewards, torch.tensor([[-0.1, 0.0, -0.1 + 1.0], [0.1, -2.0, 0.0]]))


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 7.0]])  # row 1's last entry is padding: ignored
    values = torch.tensor([[0.5, 0.4, 0.3], [1.0, 0.5, 9.0]])
    advantages, returns = advantages_and_returns(rewards, values, MASK, gamma=1.0, lam=0.5)
    # row 0: delta = (0 + 0.4 - 0.5, 0 + 0.3 - 0.4, 1 + 0 - 0.3) = (-0.1, -0.1, 0.7)
    #        A2 = 0.7, A1 = -0.1 + 0.5 x 0.7 = 0.25, A0 = -0.1 + 0.5 x 0.25 = 0.025
    # row 1: delta = (0 + 0.5 - 1.0, 2 + 0 - 0.5) = (-0.5, 1.5); A1 = 1.5, A0 = -0.5 + 0.5 x 1.5 = 0.25
    assert torch.allclose(advantages, torch.tensor([[0.025, 0.25, 0.7], [0.25, 1.5, 0.0]]))
    assert torch.allclose(returns, torch.tensor([[0.525, 0.65, 1.0], [1.25, 2.0, 0.0]]))


def test_gae_with_discount():
    advantages, _ = advantages_and_returns(
        torch.tensor([[0.0, 1.0]]), torch.tensor([[0.2, 0.6]]), torch.ones(1, 2), gamma=0.9, lam=1.0
    )
    # delta1 = 1 - 0.6 = 0.4; delta0 = 0 + 0.9 x 0.6 - 0.2 = 0.34; A0 = 0.34 + 0.9 x 0.4 = 0.7
    assert torch.allclose(advantages, torch.tensor([[0.7, 0.4]]))


def test_whitening_ignores_padding():
    whitened = masked_whiten(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]]), MASK)
    real = whitened[MASK.bool()]
    assert abs(float(real.mean())) < 1e-6 and abs(float(real.var(unbiased=False)) - 1) < 1e-5
    assert whitened[1, 2] == 0


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    advantages = torch.tensor([[1.0, 1.0]])
    parts = policy_loss(new, old, advantages, torch.ones(1, 2), clip=0.2)
    # token 0: min(1.5, 1.2) x 1 -> -1.2 (clipped); token 1: min(0.5, 0.8) x 1 -> -0.5 (not clipped)
    assert parts.loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    assert parts.clip_fraction.item() == pytest.approx(0.5)
    negative = policy_loss(new, old, -advantages, torch.ones(1, 2), clip=0.2)
    # negative advantage: token 0 keeps 1.5 x 1 = 1.5 (no gain from clipping); token 1: 0.8 (clipped)
    assert negative.loss.item() == pytest.approx((1.5 + 0.8) / 2)


def test_clipped_value_loss_by_hand():
    old_values, returns = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, -1.0]])
    values = torch.tensor([[0.5, 0.1]])
    parts = value_loss(values, old_values, returns, torch.ones(1, 2), clip=0.2)
    # token 0: max((0.5-1)^2, (0.2-1)^2) = 0.64; token 1: max((0.1+1)^2, (0.1+1)^2) = 1.21
    assert parts.loss.item() == pytest.approx(0.5 * (0.64 + 1.21) / 2)
    assert parts.clip_fraction.item() == pytest.approx(0.5)


def test_adaptive_kl_weight_moves_towards_the_target():
    controller = AdaptiveKLController(0.2, target=6.0, horizon=100)
    controller.update(current_kl=12.0, steps=10)  # error clipped to +0.2: x (1 + 0.2 x 10 / 100)
    assert controller.value == pytest.approx(0.2 * 1.02)
    controller.update(current_kl=5.4, steps=10)  # error -0.1: x (1 - 0.01)
    assert controller.value == pytest.approx(0.2 * 1.02 * 0.99)
    fixed = AdaptiveKLController(0.2, target=0.0)
    fixed.update(current_kl=100.0, steps=10)
    assert fixed.value == 0.2
