"""PPO: the policy answers prompts, a reward model or reward functions score the answers, and clipped updates make
well-scored answers likelier while a per-token KL penalty keeps the policy near its reference.

TRL 1.x has no PPO trainer, so this is glmtune's own, on transformers' Trainer (optimizer,
schedule, checkpoints, resume, logging and callbacks as in every stage). One training step
generates answers for per_device_train_batch_size x gradient_accumulation_steps prompts through
glmtune's generation path (ChatModel), scores them, then makes ppo_epochs passes over them in
mini-batches of per_device_train_batch_size, one optimizer update per pass. The reference is the
starting model: the base with the adapter disabled (one model in memory), or a frozen copy for
full and freeze tuning. The value head is saved beside the weights as value_head.safetensors.
"""

import copy
import json
import logging
import shutil
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from glmtune.chat.chat_model import ChatModel
from glmtune.data.collators import pad_token_id
from glmtune.data.templates import get_template
from glmtune.hparams.entry import TrainArgs
from glmtune.hparams.ppo_args import PPOArguments
from glmtune.hparams.validation import split_names
from glmtune.methods import get_method
from glmtune.model.adapters import adapter_swapped_in
from glmtune.model.finetuning import merged_and_continued
from glmtune.stages import Stage
from glmtune.train.ppo_experience import (
    VALUE_HEAD,
    Experience,
    answer_logprobs_and_values,
    attach_value_head,
    build_experience,
)
from glmtune.train.ppo_math import (
    AdaptiveKLController,
    advantages_and_returns,
    masked_whiten,
    policy_loss,
    token_rewards,
    value_loss,
)
from glmtune.train.preference import reference_model
from glmtune.train.reward_sources import REWARD_ADAPTER, Scorer, load_scorer
from glmtune.train.rewards import load_reward_funcs
from glmtune.train.session import (
    glmtune_callbacks,
    tokenizer_data_model,
    train_and_save,
)

logger = logging.getLogger(__name__)
REFERENCE_ADAPTER = "reference"  # a continued adapter's starting weights, loaded beside it
VALUE_HEAD_FILE = "value_head.safetensors"
PPO_STATE_FILE = "ppo_state.json"  # the KL penalty's adapted weight, so a resumed run continues with it


class PPOTrainer(Trainer):
    def __init__(
        self, *, ppo: PPOArguments, scorer: Scorer, generator: ChatModel, reference: Any, mini_batch_size: int,
        max_grad_norm: float, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.ppo, self.scorer, self.generator, self.reference = ppo, scorer, generator, reference
        self.mini_batch_size, self.max_update_norm = mini_batch_size, max_grad_norm
        self.kl_controller = AdaptiveKLController(ppo.ppo_kl_coef, ppo.ppo_target)
        self.pending: list[dict[str, float]] = []  # statistics of the steps since the last log record

    @property
    def value_head(self) -> torch.nn.Module:
        return getattr(self.model, VALUE_HEAD)

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        """Generate, score and learn from one batch of prompts; the optimizer steps inside (see optimize)."""
        experience, scores = self.rollout(inputs["prompt_ids"], inputs["answer"], sample=True)
        self.state.num_input_tokens_seen += int(experience.attention_mask.sum())
        stats = self.optimize(model, experience)
        kl = float(experience.kl.sum(dim=1).mean())  # per answer, summed over its tokens
        stats.update(reward=float(scores.mean()), kl=kl, kl_coef=self.kl_controller.value,
                     answer_length=float(experience.mask.sum(dim=1).mean()))  # fmt: skip
        self.kl_controller.update(kl, len(scores))
        self.pending.append(stats)
        return torch.tensor(stats["policy_loss"] + self.ppo.ppo_vf_coef * stats["value_loss"], device=self.args.device)

    def rollout(self, prompts: list[list[int]], references: list[str], sample: bool) -> tuple[Experience, torch.Tensor]:
        """Answers from the policy (sampled while training, greedy for evaluation), their scores, and, when sampling,
        the experience PPO learns from. All of it runs in the training's precision context, so the policy, its
        frozen reference and a shared reward adapter compute alike (under bf16 a reference in fp32 would differ
        from the starting policy it copies)."""
        with self.accelerator.autocast():
            return self.scored_experience(prompts, references, sample)

    def scored_experience(self, prompts: list[list[int]], references: list[str], sample: bool) -> tuple[Experience, torch.Tensor]:
        self.model.eval()
        answers = self.generator.generate_answers(prompts, **({} if sample else {"do_sample": False}))
        scores = torch.tensor(self.scorer(prompts, answers, references), dtype=torch.float32, device=self.args.device)
        experience = build_experience(prompts, answers, pad_token_id(self.processing_class), self.args.device)
        if not sample:
            return experience, scores
        with torch.no_grad():
            experience.logprobs, experience.values = answer_logprobs_and_values(self.model, experience, self.value_head)
            ref_logprobs = self.reference_logprobs(experience)
        rewards, experience.kl = token_rewards(
            scores, experience.logprobs, ref_logprobs, experience.mask, self.kl_controller.value
        )
        advantages, experience.returns = advantages_and_returns(
            rewards, experience.values, experience.mask, self.ppo.ppo_gamma, self.ppo.ppo_lam
        )
        experience.advantages = masked_whiten(advantages, experience.mask)
        return experience, scores

    def reference_logprobs(self, experience: Experience) -> torch.Tensor:
        """Under the starting model: a frozen copy, the starting adapter swapped in, or the base (adapter disabled)."""
        if self.reference is None:
            context = self.model.disable_adapter()
        elif self.reference == REFERENCE_ADAPTER:
            context = adapter_swapped_in(self.model, REFERENCE_ADAPTER)
        else:
            context = nullcontext()
        with context:
            model = self.reference if isinstance(self.reference, torch.nn.Module) else self.model
            return answer_logprobs_and_values(model, experience, None)[0]

    def optimize(self, model: Any, experience: Experience) -> dict[str, float]:
        """ppo_epochs passes over the experience in shuffled mini-batches, gradients summed over a pass, one update each."""
        model.train()
        rows = experience.input_ids.shape[0]
        order = torch.Generator().manual_seed(self.args.seed + self.state.global_step)
        names = ("policy_loss", "value_loss", "clip_fraction", "value_clip_fraction", "approx_kl", "grad_norm")
        parts: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(self.ppo.ppo_epochs):
            batches = torch.randperm(rows, generator=order).split(self.mini_batch_size)
            for index, rows_index in enumerate(batches):
                part = experience.rows(rows_index.to(experience.input_ids.device))
                with nullcontext() if index == len(batches) - 1 else self.accelerator.no_sync(model):
                    logprobs, values = answer_logprobs_and_values(model, part, self.value_head)
                    policy = policy_loss(logprobs, part.logprobs, part.advantages, part.mask, self.ppo.ppo_clip)
                    value = value_loss(values, part.values, part.returns, part.mask, self.ppo.ppo_value_clip)
                    share = len(rows_index) / rows  # the pass's gradient is the mean over all its answers
                    self.accelerator.backward((policy.loss + self.ppo.ppo_vf_coef * value.loss) * share)
                for name, amount in (("policy_loss", policy.loss), ("value_loss", value.loss), ("clip_fraction", policy.clip_fraction),
                                     ("value_clip_fraction", value.clip_fraction), ("approx_kl", policy.approx_kl)):  # fmt: skip
                    parts[name].append(float(amount.detach()))
            limit = self.max_update_norm if self.max_update_norm > 0 else float("inf")
            parts["grad_norm"].append(float(self.accelerator.clip_grad_norm_(model.parameters(), limit)))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)  # the Trainer's own step after this one finds no gradients
        return {name: sum(values) / len(values) for name, values in parts.items()}

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training records carry the mean PPO statistics of the steps since the previous record."""
        if "loss" in logs and self.pending:
            for name in self.pending[0]:
                logs[name] = round(sum(stats[name] for stats in self.pending) / len(self.pending), 4)
            self.pending = []
        super().log(logs, start_time)

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Mean reward of greedy answers to the held-out prompts."""
        scores, lengths = [], []
        for batch in self.get_eval_dataloader(eval_dataset):
            experience, batch_scores = self.rollout(batch["prompt_ids"], batch["answer"], sample=False)
            scores += batch_scores.tolist()
            lengths += experience.mask.sum(dim=1).tolist()
        metrics = {f"{metric_key_prefix}_reward": sum(scores) / len(scores), f"{metric_key_prefix}_answer_length": sum(lengths) / len(lengths)}
        self.log(metrics)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """The policy's weights as every stage saves them (without the value head), then the value head and KL weight."""
        if state_dict is None:
            state_dict = {name: value for name, value in self.model.state_dict().items() if not name.startswith(f"{VALUE_HEAD}.")}
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            from safetensors.torch import save_file

            directory = Path(output_dir or self.args.output_dir)
            for adapter in (REWARD_ADAPTER, REFERENCE_ADAPTER):  # PEFT saves every adapter: keep the policy's alone
                shutil.rmtree(directory / adapter, ignore_errors=True)
            save_file({name: value.contiguous() for name, value in self.value_head.state_dict().items()}, directory / VALUE_HEAD_FILE)
            (directory / PPO_STATE_FILE).write_text(json.dumps({"kl_coef": self.kl_controller.value}), encoding="utf-8")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        from safetensors.torch import load_file

        directory = Path(resume_from_checkpoint)
        self.value_head.load_state_dict(load_file(directory / VALUE_HEAD_FILE, device=str(self.args.device)))
        self.kl_controller.value = json.loads((directory / PPO_STATE_FILE).read_text(encoding="utf-8"))["kl_coef"]


def rollout_training_args(training_args: Any) -> Any:
    """The Trainer's view: one step takes a whole rollout batch and its updates happen inside the step."""
    args = copy.copy(training_args)
    args.per_device_train_batch_size = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    args.gradient_accumulation_steps = 1
    args.max_grad_norm = 0.0  # clipped per update in PPOTrainer.optimize
    args.train_sampling_strategy = "random"  # prompts have no fixed length to group by
    args.include_num_input_tokens_seen = "no"  # counted by the trainer from prompts and answers
    # The value head runs outside the wrapped forward (on its hidden states), which DDP accepts with a static graph:
    # every step uses the same weights, and their gradients are averaged over the processes like the adapter's.
    args.ddp_static_graph, args.ddp_find_unused_parameters = True, False
    return args


def starting_reference(args: TrainArgs, model: Any) -> Any:
    """The model the KL penalty measures from: the policy as it starts.

    A fresh adapter starts as the base (None: the adapter disabled); a continued LoRA adapter (an
    sft one, as ChatGLM Efficient Tuning's ppo command continues) is loaded again, frozen, beside
    the trained one (REFERENCE_ADAPTER); full and freeze tuning keep a frozen copy of the model.
    """
    if not get_method(args.finetuning.finetuning_type).adapter:
        return reference_model(args)
    _, continued = merged_and_continued(split_names(args.model.adapter_name_or_path), args.finetuning.create_new_adapter)
    if continued is None or args.finetuning.finetuning_type != "lora":
        return None
    model.load_adapter(continued, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    return REFERENCE_ADAPTER


def run_ppo(stage: Stage, args: TrainArgs) -> dict[str, Any]:
    [ppo] = args.stage_settings
    load_reward_funcs(ppo.names())  # a bad module:function fails before any model loads
    tokenizer, data, model = tokenizer_data_model(stage, args)
    attach_value_head(model)
    scorer, shared = load_scorer(args, model, tokenizer)
    logger.info("rewards from %s", "the reward adapter beside the policy's (one base model)" if shared else
                ppo.reward_model or f"reward_funcs {ppo.reward_funcs}")  # fmt: skip
    generating = replace(args.generating, max_new_tokens=ppo.max_completion_length)
    generator = ChatModel(model, tokenizer, get_template(args.data.template), generating, args.data.default_system)
    trainer = PPOTrainer(
        ppo=ppo,
        scorer=scorer,
        generator=generator,
        reference=starting_reference(args, model),
        mini_batch_size=args.training.per_device_train_batch_size,
        max_grad_norm=args.training.max_grad_norm,
        model=model,
        args=rollout_training_args(args.training),
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=stage.make_collator(tokenizer),
        processing_class=tokenizer,
        callbacks=glmtune_callbacks(),
    )
    return train_and_save(trainer, args.finetuning.plot_loss)
