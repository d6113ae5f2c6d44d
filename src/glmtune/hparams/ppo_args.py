"""Settings of the ppo stage: where rewards come from, and the PPO update's clipping, advantage and KL settings."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from glmtune.hparams.rollout_args import BUNDLED_REWARDS, RolloutArguments


@dataclass
class PPOArguments(RolloutArguments):
    PATH_SETTINGS: ClassVar[tuple[str, ...]] = ("reward_model",)  # the web UI resolves them inside its workspace

    reward_model: str = field(
        default="",
        metadata={"help": "A reward model: the output_dir of an rm run (adapter or full weights), or reward_funcs instead."},
    )
    ppo_epochs: int = field(default=4, metadata={"help": "Passes over each batch of generated answers."})
    ppo_clip: float = field(default=0.2, metadata={"help": "How far one update may move an answer's probability ratio."})
    ppo_value_clip: float = field(default=0.2, metadata={"help": "How far one update may move a value estimate."})
    ppo_vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss beside the policy loss."})
    ppo_gamma: float = field(default=1.0, metadata={"help": "Discount of later tokens' rewards."})
    ppo_lam: float = field(default=0.95, metadata={"help": "GAE's lambda: bias (0) versus variance (1) of advantages."})
    ppo_kl_coef: float = field(default=0.2, metadata={"help": "Initial weight of the per-token KL penalty to the reference."})
    ppo_target: float = field(
        default=6.0, metadata={"help": "KL to the reference the penalty weight adapts towards (0: fixed weight)."}
    )

    def problems(self, training_args: Any) -> list[str]:
        problems = self.rollout_problems()
        if bool(self.reward_model) == bool(self.names()):
            problems.append(
                "stage ppo needs one reward source: reward_model (an rm run's output_dir) or reward_funcs "
                f"({', '.join(BUNDLED_REWARDS)}, or your module:function)"
            )
        if self.reward_model and not Path(self.reward_model).expanduser().is_dir():
            problems.append(f"reward_model {self.reward_model}: no such directory; give the output_dir of an rm run")
        if self.ppo_epochs < 1:
            problems.append(f"ppo_epochs={self.ppo_epochs}: must be at least 1")
        for name in ("ppo_clip", "ppo_value_clip"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)}: must be > 0")
        for name in ("ppo_gamma", "ppo_lam"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}={getattr(self, name)}: must be between 0 and 1")
        for name in ("ppo_vf_coef", "ppo_kl_coef", "ppo_target"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)}: must be >= 0")
        return problems
