"""Argument dataclasses and the YAML / key=value / --flag parser."""

from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.finetuning_args import FinetuningArguments
from glmtune.hparams.generating_args import GeneratingArguments
from glmtune.hparams.model_args import ModelArguments

__all__ = ["DataArguments", "FinetuningArguments", "GeneratingArguments", "ModelArguments"]
