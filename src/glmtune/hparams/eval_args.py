"""Settings of `glmtune eval` beyond the training ones: which task, and how multiple choice is scored."""

from dataclasses import dataclass, field
from typing import Literal

# Task-specific defaults: a short answer needs few tokens, and greedy decoding of 512 tokens per
# question would spend most of a qa run on text the scorer never reads.
TASK_DEFAULTS: dict[str, dict[str, int]] = {"qa": {"max_new_tokens": 48}}


@dataclass
class EvalArguments:
    task: Literal["generate", "mcq", "qa"] = field(
        default="generate",
        metadata={
            "help": "generate: BLEU/ROUGE of generated answers on a dataset; mcq: multiple-choice accuracy on a "
            "C-Eval / CMMLU / MMLU folder; qa: short answers matched against alias lists."
        },
    )
    scoring: Literal["cloze", "letter"] = field(
        default="cloze",
        metadata={
            "help": "mcq: cloze scores each option's text (length-normalised log-likelihood; small models); "
            "letter scores the answer letter after the listed options (MMLU style; large models)."
        },
    )
    n_shot: int = field(default=5, metadata={"help": "mcq: solved examples from the dev split put before each question."})
    split: str = field(default="test", metadata={"help": "mcq: the split scored (test or val; C-Eval's test answers are hidden)."})
    compare_base: bool = field(
        default=False,
        metadata={"help": "mcq/qa: also run the base model without the adapter and report retention (fine-tune / base)."},
    )

    def problems(self, adapter: str | None) -> list[str]:
        found = []
        if self.n_shot < 0:
            found.append(f"n_shot={self.n_shot}: use 0 or more solved examples")
        if self.compare_base and self.task == "generate":
            found.append("compare_base compares accuracies: use it with --task mcq or --task qa")
        if self.compare_base and not adapter:
            found.append("compare_base compares a fine-tune with its base: give --adapter_name_or_path")
        return found
