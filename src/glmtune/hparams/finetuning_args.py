"""What to train: the stage and the fine-tuning method with its hyper-parameters."""

from dataclasses import dataclass, field

from glmtune.methods import method_names
from glmtune.stages import stage_names


@dataclass
class FinetuningArguments:
    stage: str = field(default="sft", metadata={"help": "Training stage.", "choices": stage_names()})
    finetuning_type: str = field(
        default="lora", metadata={"help": "Fine-tuning method.", "choices": method_names()}
    )
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA scale numerator; empty: 2 x rank."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on LoRA inputs."})
    lora_target: str = field(
        default="all", metadata={"help": "Module names to adapt, comma-separated; all: every linear layer."}
    )
    use_dora: bool = field(default=False, metadata={"help": "Weight-decomposed LoRA (DoRA)."})
    use_rslora: bool = field(default=False, metadata={"help": "Rank-stabilised LoRA scaling."})
    pre_seq_len: int = field(default=16, metadata={"help": "P-Tuning v2 prefix length."})
    prefix_projection: bool = field(default=False, metadata={"help": "P-Tuning v2: reparametrise the prefix by an MLP."})
    num_layer_trainable: int = field(default=2, metadata={"help": "Freeze tuning: train the last N layers."})
    name_module_trainable: str | None = field(
        default=None, metadata={"help": "Freeze tuning: train modules whose names contain these, comma-separated."}
    )
    create_new_adapter: bool = field(
        default=False, metadata={"help": "With adapters given: merge them all and start a new one."}
    )
    plot_loss: bool = field(default=False, metadata={"help": "Save training_loss.png in the output dir."})
    micro_batch_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Run each batch without padding, as micro-batches of at most this many tokens (same gradients, "
            "less compute and memory); 0: one padded batch. Empty: min(cutoff_len, 512) on CPU, 0 on GPU and with "
            "DeepSpeed."
        },
    )
