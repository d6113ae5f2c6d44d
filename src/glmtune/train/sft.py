"""Causal-LM training: supervised fine-tuning (loss on assistant turns) and pre-training (loss on all text).

Both stages share this recipe; their registry records differ in the data shape they encode.
"""

from typing import Any

from glmtune.errors import ConfigError
from glmtune.hparams.entry import TrainArgs
from glmtune.hparams.validation import predicts_after_training
from glmtune.model.segment_attention import use_segment_attention
from glmtune.stages import Stage
from glmtune.train.micro_batches import micro_batch_token_budget, supports_packed_rows
from glmtune.train.replay import with_replay
from glmtune.train.session import build_trainer, tokenizer_data_model, train_and_save


def run_sft(stage: Stage, args: TrainArgs) -> dict[str, Any]:
    tokenizer, data, model = tokenizer_data_model(stage, args)
    data = with_replay(data, model, tokenizer, stage, args)
    packs_rows = supports_packed_rows(model)
    if args.data.packing and not packs_rows:
        raise ConfigError("packing needs a transformers model class without prefix tuning: set packing=false")
    budget = micro_batch_token_budget(args.finetuning, args.data, args.training)
    if budget and packs_rows:
        use_segment_attention(model)  # packed micro-batches attend within each sample
    trainer = build_trainer(model, tokenizer, args.training, data, stage.make_collator(tokenizer), budget, packs_rows)
    metrics = train_and_save(trainer, args.finetuning.plot_loss)
    if predicts_after_training(args.training) and trainer.is_world_process_zero():
        from glmtune.eval.runner import predict_after_training

        predict_after_training(model, args.model, args.data, args.training, args.generating)
    return metrics
