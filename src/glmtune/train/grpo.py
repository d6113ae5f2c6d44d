"""GRPO through TRL's GRPOTrainer: several answers generated per prompt, scored by verifiable rewards, and the
better ones made likelier relative to their group.

Prompts come encoded by glmtune's template (the trainer's own chat-template step is skipped), so
generation starts exactly where training data puts the assistant's answer. The answers' log-probabilities
come from one packed sequence in which each prompt runs once for its whole group, and only the answer
tokens go through the output head (train/answer_head.py).
"""

from typing import Any

from glmtune.hparams.entry import TrainArgs
from glmtune.model.segment_attention import use_segment_attention
from glmtune.stages import Stage
from glmtune.train.answer_head import AnswerHeadModel, answers_only_applies
from glmtune.train.micro_batches import supports_packed_rows
from glmtune.train.rewards import load_reward_funcs
from glmtune.train.session import (
    build_trl_trainer,
    tokenizer_data_model,
    train_and_save,
    trl_config,
)


def glmtune_grpo(trainer_class: type) -> type:
    """GRPOTrainer generating from glmtune's prompt ids as they are, and scoring answers with each prompt run once
    and the output head at answer tokens only (train/answer_head.py)."""

    class GlmtuneGRPOTrainer(trainer_class):
        def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], None, dict[str, Any]]:
            return [list(prompt) for prompt in prompts], None, {}

        def _get_per_token_logps_and_entropies(
            self, model: Any, *args: Any, compute_entropy: bool = False, compute_aux_loss: bool = False, **kwargs: Any
        ) -> Any:
            media = {name: value for name, value in kwargs.items() if name != "batch_size" and value is not None}
            entropy_trains = compute_entropy and (self.args.entropy_coef or self.args.use_adaptive_entropy)
            if not (compute_aux_loss or media or entropy_trains) and answers_only_applies(self.accelerator.unwrap_model(model)):
                outputs = ("log_probs", "entropy") if compute_entropy else ("log_probs",)
                model = AnswerHeadModel(model, self.temperature, outputs)
            return super()._get_per_token_logps_and_entropies(
                model, *args, compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **kwargs
            )

    return GlmtuneGRPOTrainer


def run_grpo(stage: Stage, args: TrainArgs) -> dict[str, Any]:
    from trl import GRPOConfig, GRPOTrainer

    [grpo] = args.stage_settings
    rewards = load_reward_funcs(grpo.names())  # a bad module:function fails before the model loads
    tokenizer, data, model = tokenizer_data_model(stage, args)
    if supports_packed_rows(model):
        use_segment_attention(model)  # a group's answers are scored with their prompt run once
    generating = args.generating  # the stage's defaults sample the policy itself (stages.POLICY_SAMPLING)
    sampling = {name: getattr(generating, name) for name in ("temperature", "top_p", "top_k", "repetition_penalty")}
    config = trl_config(
        GRPOConfig,
        args.training,
        num_generations=grpo.num_generations,
        num_iterations=grpo.grpo_epochs,
        max_completion_length=grpo.max_completion_length,
        beta=grpo.grpo_beta,
        include_num_input_tokens_seen="no",  # GRPOTrainer counts prompt and answer tokens itself
        **{name: value for name, value in sampling.items() if value is not None},  # None: TRL's own default
    )
    trainer = build_trl_trainer(
        glmtune_grpo(GRPOTrainer),
        model,
        reward_funcs=rewards,
        args=config,
        train_dataset=data.train.rename_column("prompt_ids", "prompt"),
        eval_dataset=None if data.validation is None else data.validation.rename_column("prompt_ids", "prompt"),
        processing_class=tokenizer,
    )
    return train_and_save(trainer, args.finetuning.plot_loss)
