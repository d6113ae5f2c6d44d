"""GRPO through TRL's GRPOTrainer: several answers generated per prompt, scored by verifiable rewards, and the
better ones made likelier relative to their group.

Prompts come encoded by glmtune's template (the trainer's own chat-template step is skipped), so
generation starts exactly where training data puts the assistant's answer.
"""

from typing import Any

from glmtune.data.pipeline import build_tokenized_data
from glmtune.data.templates import get_template
from glmtune.data.tokenizer import load_tokenizer
from glmtune.hparams.entry import TrainArgs
from glmtune.model.finetuning import prepare_for_training
from glmtune.model.loader import load_model
from glmtune.stages import Stage
from glmtune.train.rewards import load_reward_funcs
from glmtune.train.session import build_trl_trainer, train_and_save, trl_config


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
    tokenizer = load_tokenizer(args.model)
    data = build_tokenized_data(args.data, stage, get_template(args.data.template), tokenizer, args.training.seed)
    model = prepare_for_training(load_model(args.model, for_training=True), args.model, args.finetuning)
    config = trl_config(
        GRPOConfig,
        args.training,
        num_generations=grpo.num_generations,
        max_completion_length=grpo.max_completion_length,
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
