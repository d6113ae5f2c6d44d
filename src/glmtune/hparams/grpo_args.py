"""Settings of the grpo stage: which rewards score the generated answers, and how many answers per prompt."""

from dataclasses import dataclass, field
from typing import Any

# Reward functions glmtune ships (train/rewards.py); a user's own is named "module:function".
BUNDLED_REWARDS = ("math_exact", "format")


@dataclass
class GRPOArguments:
    reward_funcs: str = field(
        default="",
        metadata={"help": f"Reward functions, comma-separated: bundled ({', '.join(BUNDLED_REWARDS)}) or module:function."},
    )
    num_generations: int = field(default=4, metadata={"help": "Answers generated per prompt (a group)."})
    max_completion_length: int = field(default=64, metadata={"help": "Most tokens generated per answer."})

    def names(self) -> list[str]:
        return [name.strip() for name in self.reward_funcs.split(",") if name.strip()]

    def problems(self, training_args: Any) -> list[str]:
        problems = []
        names = self.names()
        if not names:
            problems.append(f"stage grpo needs reward_funcs: {', '.join(BUNDLED_REWARDS)}, or your module:function")
        unknown = [name for name in names if ":" not in name and name not in BUNDLED_REWARDS]
        if unknown:
            problems.append(f"reward_funcs: unknown {unknown[0]!r}; bundled: {', '.join(BUNDLED_REWARDS)}, or module:function")
        if self.num_generations < 2:
            problems.append(f"num_generations={self.num_generations}: a group needs at least 2 answers to compare")
        generated = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
        if self.num_generations >= 2 and generated % self.num_generations:
            problems.append(
                f"per_device_train_batch_size x gradient_accumulation_steps = {generated} answers per step must be a "
                f"multiple of num_generations={self.num_generations}"
            )
        if self.max_completion_length < 1:
            problems.append(f"max_completion_length={self.max_completion_length}: must be at least 1")
        return problems
