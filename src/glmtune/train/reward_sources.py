"""Where ppo's rewards come from: a trained reward model, or reward functions of the answer's text.

A reward model is the output_dir of an rm run. Its train_config.yaml says which base model and
adapters it was trained on (ChatGLM Efficient Tuning's rm command trains a new adapter on top of
an sft one), so it is rebuilt exactly: that base, those adapters merged, then its own adapter
with its score head. When that base is the policy's own frozen base (a LoRA policy started with
the same merged adapters), the reward adapter is loaded beside the policy's and swapped in to
score, as ChatGLM Efficient Tuning did: one base model in memory. Otherwise it loads as a model
of its own; a folder of full weights always does.
"""

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from glmtune.data.collators import pad_token_id, padded_batch
from glmtune.errors import ConfigError
from glmtune.hparams.entry import TRAIN_CONFIG_FILE, TrainArgs
from glmtune.hparams.model_args import ModelArguments
from glmtune.hparams.validation import split_names
from glmtune.model.adapters import adapter_swapped_in
from glmtune.model.finetuning import merged_and_continued
from glmtune.train.hidden_states import final_hidden_states
from glmtune.train.rewards import load_reward_funcs

# prompts' ids, answers' ids, the dataset's reference answers -> one score per answer
Scorer = Callable[[Sequence[list[int]], Sequence[list[int]], Sequence[str]], list[float]]
REWARD_ADAPTER = "reward"  # the reward model's adapter, loaded beside the policy's "default"


def reward_model_args(policy: ModelArguments, path: str) -> ModelArguments:
    """The reward model's loading settings: its recorded base and adapters, with the policy's dtype and device."""
    directory = Path(path).expanduser()
    if not (directory / "adapter_config.json").is_file():
        return replace(policy, model_name_or_path=str(directory), adapter_name_or_path=None)
    recorded_file = directory / TRAIN_CONFIG_FILE
    if not recorded_file.is_file():  # an adapter trained elsewhere: assume it sits on the policy's model
        return replace(policy, adapter_name_or_path=",".join([*split_names(policy.adapter_name_or_path), str(directory)]))
    recorded = yaml.safe_load(recorded_file.read_text(encoding="utf-8")) or {}
    below, _ = merged_and_continued(split_names(recorded.get("adapter_name_or_path")), recorded.get("create_new_adapter", False))
    return replace(
        policy,
        model_name_or_path=recorded.get("model_name_or_path"),
        adapter_name_or_path=",".join([*below, str(directory)]),
    )


def shares_the_policys_base(args: TrainArgs, path: str) -> bool:
    """Whether the reward adapter at `path` sits on exactly the frozen base under the policy's LoRA adapter."""
    config = Path(path).expanduser() / "adapter_config.json"
    if args.finetuning.finetuning_type != "lora" or not config.is_file():
        return False
    if yaml.safe_load(config.read_text(encoding="utf-8")).get("peft_type") != "LORA":
        return False
    rebuilt = reward_model_args(args.model, path)
    merged, _ = merged_and_continued(split_names(args.model.adapter_name_or_path), args.finetuning.create_new_adapter)
    same_model = same_paths([rebuilt.model_name_or_path or ""], [args.model.model_name_or_path or ""])
    return same_model and same_paths(split_names(rebuilt.adapter_name_or_path), [*merged, path])


def same_paths(first: list[str], second: list[str]) -> bool:
    return [Path(name).expanduser().resolve() for name in first] == [Path(name).expanduser().resolve() for name in second]


def shared_adapter_scorer(policy: Any, path: str, pad_id: int) -> Scorer:
    """Scores from the reward adapter loaded into the policy's PeftModel; the policy's adapter is swapped back after."""
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    directory = Path(path).expanduser()
    config = LoraConfig.from_pretrained(str(directory))
    config.modules_to_save, config.task_type, config.inference_mode = None, policy.peft_config["default"].task_type, True
    policy.add_adapter(REWARD_ADAPTER, config)
    weights = load_file(directory / "adapter_model.safetensors")
    head_weights = [value for name, value in weights.items() if ".score." in name and name.endswith("weight")]
    if len(head_weights) != 1:
        raise ConfigError(f"reward_model {path}: expected one score head in its adapter, found {len(head_weights)}")
    set_peft_model_state_dict(policy, {name: value for name, value in weights.items() if "lora_" in name}, REWARD_ADAPTER)
    for name, parameter in policy.named_parameters():
        if f".{REWARD_ADAPTER}." in name:
            parameter.requires_grad_(False)
    head = head_weights[0].to(device=policy.get_output_embeddings().weight.device, dtype=torch.float32)

    def score(prompts: Sequence[list[int]], answers: Sequence[list[int]], references: Sequence[str]) -> list[float]:
        batch = padded_batch([prompt + answer for prompt, answer in zip(prompts, answers)], pad_id)
        ids = batch["input_ids"].to(head.device)
        with torch.no_grad(), adapter_swapped_in(policy, REWARD_ADAPTER):
            hidden = final_hidden_states(policy, input_ids=ids, attention_mask=batch["attention_mask"].to(head.device))
        # the position a sequence-classification head reads: the last token that is not padding
        last = (torch.arange(ids.shape[1], device=ids.device) * (ids != pad_id)).argmax(dim=-1)
        states = hidden[torch.arange(ids.shape[0], device=ids.device), last].float()
        return (states @ head.T).squeeze(-1).tolist()

    return score


def reward_model_scorer(model_args: ModelArguments, path: str, tokenizer: Any) -> Scorer:
    """Scores from the reward model at `path` loaded on its own; it must read the policy's token ids as its own."""
    from glmtune.data.tokenizer import load_tokenizer
    from glmtune.eval.score import load_reward_model, score_batch

    rm_args = reward_model_args(model_args, path)
    if load_tokenizer(rm_args).get_vocab() != tokenizer.get_vocab():
        raise ConfigError(
            f"reward_model {path}: its tokenizer differs from the policy's; train the reward model from the same base"
        )
    model, _ = load_reward_model(rm_args)
    pad_id = pad_token_id(tokenizer)

    def score(prompts: Sequence[list[int]], answers: Sequence[list[int]], references: Sequence[str]) -> list[float]:
        return score_batch(model, padded_batch([prompt + answer for prompt, answer in zip(prompts, answers)], pad_id))

    return score


def reward_function_scorer(names: list[str], tokenizer: Any) -> Scorer:
    """The sum of reward functions of the answers (TRL's reward-function arguments: completions, completion_ids, prompts,
    and the dataset's reference answers as `answer`)."""
    functions = load_reward_funcs(names)

    def score(prompts: Sequence[list[int]], answers: Sequence[list[int]], references: Sequence[str]) -> list[float]:
        completions = tokenizer.batch_decode(answers, skip_special_tokens=True)
        prompt_texts = tokenizer.batch_decode(prompts, skip_special_tokens=False)
        totals = [0.0] * len(completions)
        for function in functions:
            values = function(
                completions=completions, completion_ids=list(answers), answer=list(references), prompts=prompt_texts
            )
            if len(values) != len(totals):
                raise ConfigError(f"reward function {function.__name__} returned {len(values)} scores for {len(totals)} answers")
            totals = [total + float(value) for total, value in zip(totals, values)]
        return totals

    return score


def load_scorer(args: TrainArgs, policy: Any, tokenizer: Any) -> tuple[Scorer, bool]:
    """The ppo run's reward source, and whether it is an adapter inside the policy model."""
    [ppo] = args.stage_settings
    if not ppo.reward_model:
        return reward_function_scorer(ppo.names(), tokenizer), False
    if shares_the_policys_base(args, ppo.reward_model):
        return shared_adapter_scorer(policy, ppo.reward_model, pad_token_id(tokenizer)), True
    return reward_model_scorer(args.model, ppo.reward_model, tokenizer), False
