"""Where and how `glmtune export` writes a merged model."""

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ExportArguments:
    export_dir: str | None = field(
        default=None,
        # --output_dir is how ChatGLM Efficient Tuning's export_model.py names it
        metadata={"help": "Directory for the merged model (aliases: out, output_dir).", "aliases": ["--output_dir"]},
    )
    export_size: float = field(default=2.0, metadata={"help": "Largest safetensors shard, in GB."})
    export_dtype: Literal["auto", "float32", "float16", "bfloat16"] = field(
        default="auto", metadata={"help": "Saved weights dtype; auto keeps the loaded dtype."}
    )
    export_format: Literal["native", "chatglm"] = field(
        default="native",
        metadata={
            "help": "Layout written: native (transformers) or chatglm (the original ChatGLM2/3 layout, for its own code "
            "or chatglm.cpp; alias: format)."
        },
    )
    export_overwrite: bool = field(default=False, metadata={"help": "Replace an existing export_dir."})
