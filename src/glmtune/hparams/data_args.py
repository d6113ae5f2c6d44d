"""Which data to train or evaluate on and how to turn it into tokens."""

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class DataArguments:
    template: str = field(
        default="default",
        metadata={"help": "Chat format by name; default: the tokenizer's own chat_template."},
    )
    dataset: str | None = field(
        default=None, metadata={"help": "Dataset names from dataset_info.json or paths, comma-separated."}
    )
    eval_dataset: str | None = field(default=None, metadata={"help": "Datasets used only for evaluation."})
    dataset_dir: str | None = field(
        default=None, metadata={"help": "Folder with dataset_info.json; empty: glmtune's bundled datasets."}
    )
    encoding: str | None = field(
        default=None,
        metadata={"help": "Text encoding of dataset files whose dataset_info.json entry names none, e.g. gbk, gb18030, "
                  "utf-16; default: UTF-8."},
    )
    default_system: str | None = field(
        default=None, metadata={"help": "System prompt replacing the template's default (alias: source_prefix)."}
    )
    cutoff_len: int = field(default=1024, metadata={"help": "Most tokens per sample after tokenization."})
    max_source_length: int | None = field(
        default=None, metadata={"help": "ChatGLM Efficient Tuning's prompt budget; with max_target_length sets cutoff_len."}
    )
    max_target_length: int | None = field(
        default=None, metadata={"help": "ChatGLM Efficient Tuning's response budget."}
    )
    train_on_prompt: bool = field(default=False, metadata={"help": "Also compute loss on prompt tokens."})
    mask_history: bool = field(default=False, metadata={"help": "Loss on the last assistant turn only."})
    skip_overlength: bool = field(
        default=False, metadata={"help": "Skip (and count) samples over cutoff_len instead of truncating them."}
    )
    packing: bool = field(default=False, metadata={"help": "Pack several samples per sequence."})
    max_samples: int | None = field(default=None, metadata={"help": "Use at most this many rows per dataset."})
    val_size: float = field(
        default=0.0, metadata={"help": "Validation split: a fraction (<1) or a row count (alias: dev_ratio)."}
    )
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = field(
        default="concat", metadata={"help": "How several datasets are mixed."}
    )
    interleave_probs: str | None = field(
        default=None, metadata={"help": "Sampling probabilities for interleaving, comma-separated."}
    )
    streaming: bool = field(default=False, metadata={"help": "Stream files bigger than memory."})
    buffer_size: int = field(default=16384, metadata={"help": "Shuffle buffer size when streaming."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Rebuild the preprocessed-data cache."})
    generator_args: str | None = field(
        default=None,
        metadata={"help": "Arguments for generated datasets such as math_4op, as YAML: '{size: 5000, seed: 1}'."},
    )
    replay: float = field(
        default=0.0,
        metadata={
            "help": "Against forgetting (sft): add the starting model's own answers to glmtune's bundled general "
            "prompts (en + zh), this many per training row and epoch (1: as many as the data has; other prompts each "
            "epoch), generated once per model and cached. A dataset may ask for it in dataset_info.json (`defaults`; the bundled "
            "identity set asks for 1)."
        },
    )
    restrain_new_words: float = field(
        default=1.0,
        metadata={
            "help": "With replay: the weight of a hinge that holds the words the training answers bring in (used in 10% "
            "of them or more, never in the starting model's own answers: a new name) on replayed conversations to at most twice "
            "the probability the starting model gave them there, so they stay where they were taught (0: off)."
        },
    )
    identity_name: str = field(default="glmtune", metadata={"help": "Fills {{name}} in identity datasets."})
    identity_author: str = field(default="glmtune", metadata={"help": "Fills {{author}} in identity datasets."})

    def __post_init__(self) -> None:
        # ChatGLM Efficient Tuning gave separate prompt and response budgets; glmtune cuts whole samples.
        if self.max_source_length and self.max_target_length:
            self.cutoff_len = self.max_source_length + self.max_target_length
