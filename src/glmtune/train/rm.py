"""Reward modelling: a one-number score head on a causal LM's body, trained on chosen/rejected pairs.

TRL's RewardTrainer gives the pairwise loss, -log sigmoid(score(chosen) - score(rejected)), and
logs accuracy and margin, held-out ones included. The model is transformers' sequence
classification class, so a LoRA run saves its head in the adapter's safetensors (PEFT's
modules_to_save) and a plain transformers + PEFT load scores (`glmtune score`).
"""

from typing import Any

from glmtune.hparams.entry import TrainArgs
from glmtune.stages import Stage
from glmtune.train.session import (
    build_trl_trainer,
    tokenizer_data_model,
    train_and_save,
    trl_config,
)


def run_rm(stage: Stage, args: TrainArgs) -> dict[str, Any]:
    from trl import RewardConfig, RewardTrainer

    tokenizer, data, model = tokenizer_data_model(stage, args)
    model.config.pad_token_id = tokenizer.pad_token_id  # the head scores each row's last token before padding
    trainer = build_trl_trainer(
        RewardTrainer,
        model,
        args=trl_config(RewardConfig, args.training, max_length=None),  # pairs are already cut to cutoff_len
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=stage.make_collator(tokenizer),
        processing_class=tokenizer,
    )
    return train_and_save(trainer, args.finetuning.plot_loss)
