"""The one Trainer every supervised stage uses: HF's Seq2SeqTrainer with a cheaper loss."""

from typing import Any

from transformers import Seq2SeqTrainer

from glmtune.train.loss import selective_causal_lm_loss


class GlmtuneTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose training loss projects to the vocabulary only at labelled positions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The loss below is already divided by the label count of the whole accumulated batch.
        self.model_accepts_loss_kwargs = True

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if return_outputs:  # evaluation wants logits too: the model's own forward gives them
            return super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        return selective_causal_lm_loss(model, inputs, num_items_in_batch)
