"""Load the tokenizer that data is encoded with, from wherever the model's files are."""

from glmtune.errors import ModelNotFoundError
from glmtune.hparams.model_args import ModelArguments
from glmtune.model_source import first_line, resolve_model_source


def load_tokenizer(model_args: ModelArguments, padding_side: str = "right"):
    from transformers import AutoTokenizer

    path, extra = resolve_model_source(model_args.model_name_or_path, model_args.trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path,
            use_fast=model_args.use_fast_tokenizer,
            trust_remote_code=model_args.trust_remote_code,
            cache_dir=model_args.cache_dir,
            padding_side=padding_side,
            **extra,
        )
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"cannot load a tokenizer from {path}: {first_line(error)}") from error
    if tokenizer.pad_token_id is None:
        # Decoder-only chat models often ship without a pad token; eos is never a loss target under padding.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
