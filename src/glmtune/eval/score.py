"""`glmtune score`: what a trained reward model thinks of an answer, or how well it ranks held-out pairs.

The reward model loads as it trained, through transformers' sequence-classification class with
its adapters, and sees text laid out by the same template, so scores match those of training.
"""

from collections.abc import Sequence
from typing import Any

from glmtune.data.collators import PairwiseCollator, pad_token_id, padded_batch
from glmtune.data.row_encoding import prompt_and_answer
from glmtune.stages import get_stage


def load_reward_model(model_args: Any) -> tuple[Any, Any]:
    from glmtune.data.tokenizer import load_tokenizer
    from glmtune.model.loader import load_model

    tokenizer = load_tokenizer(model_args)
    model = load_model(model_args, head=get_stage("rm").head)
    model.config.pad_token_id = tokenizer.pad_token_id  # as in training: the head reads the last token before padding
    return model, tokenizer


def score_batch(model: Any, batch: dict[str, Any]) -> list[float]:
    """One score per row of a right-padded batch, as the reward trainer's batches were."""
    import torch

    with torch.no_grad():
        return model(**{name: values.to(model.device) for name, values in batch.items()}).logits[:, 0].float().tolist()


def score_answer(model: Any, tokenizer: Any, data_args: Any, prompt: str, response: str) -> float:
    from glmtune.data.templates import encode_turns, get_template

    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    turns = encode_turns(get_template(data_args.template), tokenizer, messages, data_args.default_system)
    prompt_ids, answer_ids = prompt_and_answer(turns)
    return score_batch(model, padded_batch([prompt_ids + answer_ids], pad_token_id(tokenizer)))[0]


def rank_pairs(model: Any, tokenizer: Any, data_args: Any, batch_size: int) -> dict[str, float]:
    """Pairwise accuracy (chosen scored above rejected) and mean margin over a dataset encoded as rm trains on it."""
    from glmtune.data.loader import load_examples
    from glmtune.data.shapes import encode_dataset
    from glmtune.data.templates import get_template

    stage = get_stage("rm")
    loaded = load_examples(data_args, stage.name)
    examples = loaded.validation if loaded.validation is not None else loaded.train
    pairs, _ = encode_dataset(examples, stage.data, get_template(data_args.template), tokenizer, data_args)
    collate = PairwiseCollator(tokenizer)  # the batches the reward model trained on: chosen rows, then rejected ones
    margins: list[float] = []
    for start in range(0, len(pairs), batch_size):
        rows = [pairs[index] for index in range(start, min(start + batch_size, len(pairs)))]
        scores = score_batch(model, collate(rows))
        margins += [chosen - rejected for chosen, rejected in zip(scores[: len(rows)], scores[len(rows) :])]
    return {
        "pairs": len(margins),
        "accuracy": sum(margin > 0 for margin in margins) / len(margins),
        "mean_margin": sum(margins) / len(margins),
    }


def main(argv: Sequence[str]) -> int:
    from glmtune.hparams.entry import get_score_args

    model_args, data_args, score_args = get_score_args(argv)
    model, tokenizer = load_reward_model(model_args)
    if score_args.prompt is not None:
        print(f"score: {score_answer(model, tokenizer, data_args, score_args.prompt, score_args.response):.4f}")
        return 0
    result = rank_pairs(model, tokenizer, data_args, score_args.batch_size)
    print(
        f"score summary: {result['pairs']} pairs, accuracy {result['accuracy']:.4f}, "
        f"mean margin {result['mean_margin']:.4f} (chosen minus rejected)"
    )
    return 0
