"""Settings of the grpo stage: which rewards score the generated answers, and how many answers per prompt."""

from dataclasses import dataclass, field
from typing import Any

from glmtune.hparams.rollout_args import BUNDLED_REWARDS, RolloutArguments


@dataclass
class GRPOArguments(RolloutArguments):
    num_generations: int = field(default=4, metadata={"help": "Answers generated per prompt (a group)."})
    grpo_epochs: int = field(
        default=1,
        metadata={
            "help": "Updates from each batch of generated answers (TRL's num_iterations); more than 1 spends the "
            "costly generation on several steps, each clipped to the policy that generated."
        },
    )
    grpo_beta: float = field(
        default=0.0, metadata={"help": "Weight of the KL penalty to the starting model (TRL's beta; 0: none)."}
    )

    def problems(self, training_args: Any) -> list[str]:
        problems = self.rollout_problems()
        if not self.names():
            problems.append(f"stage grpo needs reward_funcs: {', '.join(BUNDLED_REWARDS)}, or your module:function")
        if self.grpo_beta < 0:
            problems.append(f"grpo_beta={self.grpo_beta}: must be >= 0 (0: no KL penalty)")
        if self.grpo_epochs < 1:
            problems.append(f"grpo_epochs={self.grpo_epochs}: must be at least 1")
        if self.num_generations < 2:
            problems.append(f"num_generations={self.num_generations}: a group needs at least 2 answers to compare")
        generated = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
        if self.num_generations >= 2 and generated % self.num_generations:
            problems.append(
                f"per_device_train_batch_size x gradient_accumulation_steps = {generated} answers per step must be a "
                f"multiple of num_generations={self.num_generations}"
            )
        return problems
