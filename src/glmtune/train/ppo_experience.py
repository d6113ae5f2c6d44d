"""One PPO step's experience: prompts with the answers the policy generated, and what is known about each token.

Log-probabilities and value estimates are needed only at answer tokens, so the model runs with
one position of logits and the output head and value head read the final hidden states at the
answer positions alone (as the supervised loss does, train/loss.py).
"""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

from glmtune.data.collators import pad, padded_batch
from glmtune.train.hidden_states import final_hidden_states
from glmtune.train.loss import has_plain_head

VALUE_HEAD = "v_head"  # the value head's attribute on the policy model (a submodule, so it trains and syncs with it)


def attach_value_head(model: Any) -> torch.nn.Linear:
    """A fresh fp32 value head reading the final hidden states; zero-initialised, so values start at 0."""
    hidden_size = model.get_output_embeddings().weight.shape[1]
    head = torch.nn.Linear(hidden_size, 1, device=model.get_output_embeddings().weight.device, dtype=torch.float32)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    setattr(model, VALUE_HEAD, head)
    return head


@dataclass
class Experience:
    """Tensors of [rows, answer tokens] (padded, `mask` marks real tokens), and the model inputs they come from."""

    input_ids: torch.Tensor  # prompt + answer, right-padded
    attention_mask: torch.Tensor
    positions: torch.Tensor  # index of the hidden state that predicts each answer token
    targets: torch.Tensor  # the answer tokens
    mask: torch.Tensor
    logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    kl: torch.Tensor | None = None  # per-token KL estimate to the reference
    advantages: torch.Tensor | None = None
    returns: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> "Experience":
        """The experience of some rows, cut to their own longest sequence."""
        kept = {f.name: getattr(self, f.name) for f in fields(self)}
        selected = {name: None if value is None else value[index] for name, value in kept.items()}
        width = int(selected["attention_mask"].sum(dim=1).max())
        selected["input_ids"], selected["attention_mask"] = selected["input_ids"][:, :width], selected["attention_mask"][:, :width]
        return Experience(**selected)


def build_experience(prompts: Sequence[list[int]], answers: Sequence[list[int]], pad_id: int, device: Any) -> Experience:
    """Model inputs for prompt + answer, and where in them each answer token is predicted."""
    batch = padded_batch([list(prompt) + list(answer) for prompt, answer in zip(prompts, answers)], pad_id)
    width = max(len(answer) for answer in answers)
    positions = [[len(prompt) - 1 + step for step in range(len(answer))] for prompt, answer in zip(prompts, answers)]
    mask = torch.arange(width) < torch.tensor([len(answer) for answer in answers])[:, None]
    return Experience(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        positions=pad(positions, 0, width).to(device),
        targets=pad([list(answer) for answer in answers], 0, width).to(device),
        mask=mask.float().to(device),
    )


def answer_logprobs_and_values(
    model: Any, experience: Experience, value_head: torch.nn.Module | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probability of each answer token under `model` and, with a value head, the value of the state before it."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model)  # a DDP wrapper runs the forward; the model answers the rest
    plain = has_plain_head(inner)
    inputs = {"input_ids": experience.input_ids, "attention_mask": experience.attention_mask}
    if plain:
        hidden = final_hidden_states(model, **inputs)
    else:  # heads that post-process logits need the model's own
        outputs = model(**inputs, output_hidden_states=True, use_cache=False)
        hidden = outputs.hidden_states[-1]
    width = experience.input_ids.shape[1]
    hidden = hidden[:, -width:]  # prompt tuning prepends virtual tokens to the states
    index = experience.positions[..., None]
    states = hidden.gather(1, index.expand(-1, -1, hidden.shape[-1]))
    if plain:
        logits = inner.get_output_embeddings()(states)
    else:
        logits = outputs.logits[:, -width:].gather(1, index.expand(-1, -1, outputs.logits.shape[-1]))
    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, experience.targets[..., None]).squeeze(-1)
    values = None if value_head is None else value_head(states.float()).squeeze(-1)
    return logprobs * experience.mask, None if values is None else values * experience.mask
