"""Settings shared by the stages that learn from answers the model generates while training (grpo, ppo)."""

from dataclasses import dataclass, field
from typing import ClassVar

# Reward functions glmtune ships (train/rewards.py's BUNDLED, which a test holds equal to this; settings
# sit below training code and do not import it); a user's own is named "module:function".
BUNDLED_REWARDS = ("math_exact", "math_close", "format")


@dataclass
class RolloutArguments:
    # Settings whose values can name code to import (module:function): the web UI takes bundled names only.
    IMPORTING_SETTINGS: ClassVar[tuple[str, ...]] = ("reward_funcs",)

    reward_funcs: str = field(
        default="",
        metadata={"help": f"Reward functions, comma-separated: bundled ({', '.join(BUNDLED_REWARDS)}) or module:function."},
    )
    max_completion_length: int = field(default=64, metadata={"help": "Most tokens generated per answer."})

    def names(self) -> list[str]:
        return [name.strip() for name in self.reward_funcs.split(",") if name.strip()]

    def rollout_problems(self) -> list[str]:
        problems = []
        unknown = [name for name in self.names() if ":" not in name and name not in BUNDLED_REWARDS]
        if unknown:
            problems.append(f"reward_funcs: unknown {unknown[0]!r}; bundled: {', '.join(BUNDLED_REWARDS)}, or module:function")
        if self.max_completion_length < 1:
            problems.append(f"max_completion_length={self.max_completion_length}: must be at least 1")
        return problems
