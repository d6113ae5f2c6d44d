"""Direct preference optimisation through TRL's DPOTrainer: chosen answers made likelier than rejected ones."""

from typing import Any

from glmtune.data.pipeline import build_tokenized_data
from glmtune.data.templates import get_template
from glmtune.data.tokenizer import load_tokenizer
from glmtune.hparams.entry import TrainArgs
from glmtune.model.finetuning import prepare_for_training
from glmtune.model.loader import load_model
from glmtune.stages import Stage
from glmtune.train.preference import pretokenized, reference_model
from glmtune.train.session import build_trl_trainer, train_and_save, trl_config


def run_dpo(stage: Stage, args: TrainArgs) -> dict[str, Any]:
    from trl import DPOConfig, DPOTrainer

    [preference] = args.stage_settings
    tokenizer = load_tokenizer(args.model)
    data = build_tokenized_data(args.data, stage, get_template(args.data.template), tokenizer, args.training.seed)
    model = prepare_for_training(load_model(args.model, for_training=True), args.model, args.finetuning)
    losses, weights = [preference.pref_loss], [1.0]
    if preference.pref_ftx:
        losses, weights = [*losses, "sft"], [*weights, preference.pref_ftx]  # TRL's sft loss: NLL of the chosen answer
    config = trl_config(
        DPOConfig, args.training, beta=preference.pref_beta, loss_type=losses, loss_weights=weights, max_length=None
    )
    trainer = build_trl_trainer(
        pretokenized(DPOTrainer),
        model,
        ref_model=reference_model(args),
        args=config,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=stage.make_collator(tokenizer),
        processing_class=tokenizer,
    )
    return train_and_save(trainer, args.finetuning.plot_loss)
