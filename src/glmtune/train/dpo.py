"""Preference optimisation: chosen answers made likelier than rejected ones.

DPO and its variants (sigmoid, ipo, hinge) run through TRL's DPOTrainer against a reference
model, on a CPU with each batch's pairs packed (train/preference_logps.py); the reference-free
losses run through TRL's trainers for them: ORPO (its odds-ratio term with the SFT loss built in)
and SimPO (CPO's trainer with the simpo loss; pref_ftx weighs its SFT term).
"""

from typing import Any

from glmtune.hparams.entry import TrainArgs
from glmtune.model.segment_attention import use_segment_attention
from glmtune.stages import Stage
from glmtune.train.micro_batches import micro_batch_token_budget, supports_packed_rows
from glmtune.train.preference import pretokenized, pretokenized_rows, reference_model
from glmtune.train.preference_logps import packed_pairs_trainer
from glmtune.train.session import (
    build_trl_trainer,
    tokenizer_data_model,
    train_and_save,
    trl_config,
)


def run_dpo(stage: Stage, args: TrainArgs) -> dict[str, Any]:
    [preference] = args.stage_settings
    tokenizer, data, model = tokenizer_data_model(stage, args)
    splits = {"train_dataset": data.train, "eval_dataset": data.validation, "processing_class": tokenizer}
    if preference.pref_loss == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        config = trl_config(ORPOConfig, args.training, beta=preference.pref_beta)
        trainer = build_trl_trainer(pretokenized_rows(ORPOTrainer), model, args=config, **splits)
    elif preference.pref_loss == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        config = trl_config(CPOConfig, args.training, loss_type="simpo", beta=preference.pref_beta, cpo_alpha=preference.pref_ftx)
        trainer = build_trl_trainer(pretokenized_rows(CPOTrainer), model, args=config, **splits)
    else:
        from trl import DPOConfig, DPOTrainer

        losses, weights = [preference.pref_loss], [1.0]
        if preference.pref_ftx:
            losses, weights = [*losses, "sft"], [*weights, preference.pref_ftx]  # TRL's sft loss: NLL of the chosen answer
        config = trl_config(
            DPOConfig, args.training, beta=preference.pref_beta, loss_type=losses, loss_weights=weights, max_length=None
        )
        reference = reference_model(args)
        budget = micro_batch_token_budget(args.finetuning, args.data, args.training)
        if budget and supports_packed_rows(model):  # pairs run packed: each row attends within itself
            for network in (model, reference) if reference is not None else (model,):
                use_segment_attention(network)
        trainer = build_trl_trainer(
            packed_pairs_trainer(pretokenized(DPOTrainer)), model, ref_model=reference, args=config,
            data_collator=stage.make_collator(tokenizer), micro_batch_tokens=budget, **splits,
        )  # fmt: skip
    return train_and_save(trainer, args.finetuning.plot_loss)
