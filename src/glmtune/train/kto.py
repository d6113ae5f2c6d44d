"""KTO through TRL's KTOTrainer: each answer, tagged desirable or undesirable, is made likelier or less likely.

KTO estimates its KL term from mismatched (prompt, completion) pairs within a batch, so batches
run in the data's order (TRL requires it) and the mismatched completions are added to the
encoded samples here, as TRL's own preparation would.
"""

from typing import Any

from glmtune.hparams.entry import TrainArgs
from glmtune.stages import Stage
from glmtune.train.preference import pretokenized, reference_model
from glmtune.train.session import (
    build_trl_trainer,
    tokenizer_data_model,
    train_and_save,
    trl_config,
)


def add_mismatched_completions(trainer: Any, dataset: Any, args: Any) -> Any:
    """Each batch's completions rotated by one, (x1, y_n), (x2, y1), ...: the pairs KTO's KL estimate reads."""
    if not trainer.calculate_KL:
        return dataset

    def rotate(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        completions = batch["completion_ids"]
        return {"KL_completion_ids": completions[-1:] + completions[:-1]}

    return dataset.map(rotate, batched=True, batch_size=args.per_device_train_batch_size, desc="mismatched completions")


def run_kto(stage: Stage, args: TrainArgs) -> dict[str, Any]:
    from trl import KTOConfig, KTOTrainer

    [kto] = args.stage_settings
    tokenizer, data, model = tokenizer_data_model(stage, args)
    config = trl_config(
        KTOConfig,
        args.training,
        beta=kto.pref_beta,
        desirable_weight=kto.kto_chosen_weight,
        undesirable_weight=kto.kto_rejected_weight,
        max_length=None,
        train_sampling_strategy="sequential",
    )
    trainer = build_trl_trainer(
        pretokenized(KTOTrainer, add_mismatched_completions),
        model,
        ref_model=reference_model(args),
        args=config,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=stage.make_collator(tokenizer),
        processing_class=tokenizer,
    )
    return train_and_save(trainer, args.finetuning.plot_loss)
