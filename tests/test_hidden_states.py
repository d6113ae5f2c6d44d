"""The final hidden states come from a forward whose output head computes nothing, and the head is whole after."""

import torch
from transformers import AutoModelForCausalLM

from glmtune.train.hidden_states import final_hidden_states, head_skipped


def test_final_hidden_states_are_the_models_own_and_the_head_makes_no_logits(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[5, 9, 13, 7, 2, 11]])
    expected = model(ids, output_hidden_states=True).hidden_states[-1]
    head_outputs = []
    model.get_output_embeddings().register_forward_hook(lambda module, args, output: head_outputs.append(output.shape[-1]))
    torch.testing.assert_close(final_hidden_states(model, input_ids=ids), expected)
    assert head_outputs == [0]
    assert model(ids).logits.shape[-1] == model.config.vocab_size  # the head works again after
    assert "forward" not in vars(model.get_output_embeddings())


def test_a_forward_set_on_the_head_itself_comes_back(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    head = model.get_output_embeddings()
    hooked = head.forward  # as accelerate's device hooks set it: an attribute of the module, not of its class
    head.forward = hooked
    with head_skipped(model):
        assert head(torch.zeros(1, 2, head.in_features)).shape == (1, 2, 0)
    assert vars(head)["forward"] is hooked
