"""Direct preference optimisation through TRL's DPOTrainer: chosen answers made likelier than rejected ones.

With an adapter method the reference model is the starting adapter (TRL keeps a frozen copy of
it; a fresh LoRA's copy is the base model), so one base model is in memory; full and freeze
tuning load a frozen reference copy. Samples come already encoded by glmtune's template, so the
trainer's own text tokenization is skipped.
"""

from typing import Any

from glmtune.data.pipeline import build_tokenized_data
from glmtune.data.templates import get_template
from glmtune.data.tokenizer import load_tokenizer
from glmtune.hparams.entry import TrainArgs
from glmtune.methods import get_method
from glmtune.model.finetuning import prepare_for_training
from glmtune.model.loader import load_model
from glmtune.stages import Stage
from glmtune.train.session import build_trl_trainer, train_and_save, trl_config


def pretokenized_dpo_trainer() -> type:
    """TRL's DPOTrainer, reading glmtune's prompt_ids/chosen_ids/rejected_ids as they are."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            return dataset  # encoded by glmtune's template, truncated to cutoff_len

    return PretokenizedDPOTrainer


def run_dpo(stage: Stage, args: TrainArgs) -> dict[str, Any]:
    from trl import DPOConfig

    [preference] = args.stage_settings
    tokenizer = load_tokenizer(args.model)
    data = build_tokenized_data(args.data, stage, get_template(args.data.template), tokenizer, args.training.seed)
    model = prepare_for_training(load_model(args.model, for_training=True), args.model, args.finetuning)
    reference = None if get_method(args.finetuning.finetuning_type).adapter else load_model(args.model)
    losses, weights = [preference.pref_loss], [1.0]
    if preference.pref_ftx:
        losses, weights = [*losses, "sft"], [*weights, preference.pref_ftx]  # TRL's sft loss: NLL of the chosen answer
    config = trl_config(
        DPOConfig, args.training, beta=preference.pref_beta, loss_type=losses, loss_weights=weights, max_length=None
    )
    trainer = build_trl_trainer(
        pretokenized_dpo_trainer(),
        model,
        ref_model=reference,
        args=config,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=stage.make_collator(tokenizer),
        processing_class=tokenizer,
    )
    return train_and_save(trainer, args.finetuning.plot_loss)
