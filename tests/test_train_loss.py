"""The selective-head loss equals the model's own loss, for values and gradients."""

import pytest
import torch

from glmtune.hparams import FinetuningArguments, ModelArguments
from glmtune.model.finetuning import prepare_for_training
from glmtune.model.loader import load_model
from glmtune.train.loss import IGNORE_INDEX, selective_causal_lm_loss


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 300, (3, 16), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, -5:] = 0
    labels = input_ids.clone()
    labels[:, :6] = IGNORE_INDEX  # prompt
    labels[attention_mask == 0] = IGNORE_INDEX  # padding
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.mark.parametrize("method", ["lora", "p_tuning", "full"])
def test_selective_loss_matches_full_logits_loss(tiny_model_dir, method):
    model_args = ModelArguments(model_name_or_path=str(tiny_model_dir))
    model = prepare_for_training(load_model(model_args, for_training=True), model_args, FinetuningArguments(finetuning_type=method))
    model.train()
    inputs = batch()
    reference = model(**inputs).loss
    reference.backward()
    reference_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    loss = selective_causal_lm_loss(model, inputs)
    loss.backward()
    assert loss.item() == pytest.approx(reference.item(), abs=1e-5)
    for mine, theirs in zip((p.grad for p in model.parameters() if p.requires_grad), reference_grads):
        assert torch.allclose(mine, theirs, atol=1e-5)


def test_num_items_in_batch_gives_a_sum_over_the_accumulated_count(tiny_llama_dir):
    model_args = ModelArguments(model_name_or_path=str(tiny_llama_dir))
    model = load_model(model_args, for_training=True)
    inputs = batch()
    count = int((inputs["labels"][:, 1:] != IGNORE_INDEX).sum())
    mean = selective_causal_lm_loss(model, inputs)
    assert selective_causal_lm_loss(model, inputs, num_items_in_batch=2 * count).item() == pytest.approx(mean.item() / 2, rel=1e-5)
