"""GRPO through TRL's GRPOTrainer: several answers generated per prompt, scored by verifiable rewards, and the
better ones made likelier relative to their group.

Prompts come encoded by glmtune's template (the trainer's own chat-template step is skipped), so
generation starts exactly where training data puts the assistant's answer.
"""

from typing import Any

from glmtune.hparams.entry import TrainArgs
from glmtune.stages import Stage
from glmtune.train.rewards import load_reward_funcs
from glmtune.train.session import (
    build_trl_trainer,
    tokenizer_data_model,
    train_and_save,
    trl_config,
)


def pretokenized_prompts(trainer_class: type) -> type:
    """GRPOTrainer generating from glmtune's prompt ids as they are."""

    class PretokenizedGRPOTrainer(trainer_class):
        def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], None, dict[str, Any]]:
            return [list(prompt) for prompt in prompts], None, {}

    return PretokenizedGRPOTrainer


def run_grpo(stage: Stage, args: TrainArgs) -> dict[str, Any]:
    from trl import GRPOConfig, GRPOTrainer

    [grpo] = args.stage_settings
    rewards = load_reward_funcs(grpo.names())  # a bad module:function fails before the model loads
    tokenizer, data, model = tokenizer_data_model(stage, args)
    generating = args.generating  # the stage's defaults sample the policy itself (stages.POLICY_SAMPLING)
    sampling = {name: getattr(generating, name) for name in ("temperature", "top_p", "top_k", "repetition_penalty")}
    config = trl_config(
        GRPOConfig,
        args.training,
        num_generations=grpo.num_generations,
        max_completion_length=grpo.max_completion_length,
        beta=grpo.grpo_beta,
        **{name: value for name, value in sampling.items() if value is not None},  # None: TRL's own default
    )
    trainer = build_trl_trainer(
        pretokenized_prompts(GRPOTrainer),
        model,
        reward_funcs=rewards,
        args=config,
        train_dataset=data.train.rename_column("prompt_ids", "prompt"),
        eval_dataset=None if data.validation is None else data.validation.rename_column("prompt_ids", "prompt"),
        processing_class=tokenizer,
    )
    return train_and_save(trainer, args.finetuning.plot_loss)
