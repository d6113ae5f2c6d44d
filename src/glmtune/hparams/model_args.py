"""Which model to load and how: path or alias, adapters, dtype, device, quantization."""

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local directory, GGUF file, alias (smollm2-135m) or hub id. "
            "Empty: the embedded default model."
        },
    )
    adapter_name_or_path: str | None = field(
        default=None,
        metadata={"help": "PEFT adapter directories, comma-separated; merged in order (alias: checkpoint_dir)."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where hub downloads are stored."})
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Use a fast (Rust) tokenizer."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run code shipped with a hub model (needed by original ChatGLM repos)."}
    )
    use_safetensors: bool = field(
        default=True, metadata={"help": "Load weights from safetensors only (pickle files can run code)."}
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = field(
        default="auto",
        metadata={
            "help": "Compute precision of train, eval, chat and api. auto: bf16 where the hardware runs it fast "
            "(a GPU with bf16, a CPU with AMX-BF16 or AVX512-BF16), fp32 elsewhere; --bf16/--fp16 ask too. "
            "A CPU maps fp16 to bf16, or falls back to fp32 with a warning. $GLMTUNE_PRECISION replaces auto."
        },
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = field(
        default="auto",
        metadata={
            "help": "Weights dtype; auto follows precision (training on a CPU keeps fp32 weights under bf16 "
            "autocast), fp16 on GPUs without bf16."
        },
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N or mps."})
    quantization_bit: int | None = field(
        default=None, metadata={"help": "Load base weights in 4 or 8 bits through bitsandbytes (QLoRA)."}
    )
    quantization_type: Literal["nf4", "fp4"] = field(
        default="nf4", metadata={"help": "4-bit data type for quantization_bit=4."}
    )
    double_quantization: bool = field(
        default=True, metadata={"help": "Quantize the 4-bit quantization constants too (saves memory)."}
    )
    threads: int | None = field(
        default=None,
        metadata={
            "help": "torch's intra-op threads (torch.set_num_threads) for train, eval, chat and api; empty: torch's "
            "default, one per core. On a machine busy with other work, fewer threads than cores decode several "
            "times faster: threads waiting for a busy core stall every matrix product."
        },
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "eager, sdpa or flash_attention_2; empty lets transformers choose."}
    )
