"""Shared fixtures: tiny models on disk, built once per test session."""

import os
from pathlib import Path

import pytest
from tiny_models import build_model, build_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One precision on every machine: tests that compare runs to 1e-4 must not depend on the CPU's bf16
# instructions; tests/test_precision.py exercises auto and bf16 explicitly.
os.environ.setdefault("GLMTUNE_PRECISION", "fp32")


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-tokenizer")
    build_tokenizer(directory)
    return directory


@pytest.fixture(scope="session", params=["llama", "glm"])
def tiny_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    """A tiny random model directory, once for each supported architecture."""
    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp(f"tiny-{request.param}")
    return build_model(request.param, directory, AutoTokenizer.from_pretrained(tiny_tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp("tiny-llama-single")
    return build_model("llama", directory, AutoTokenizer.from_pretrained(tiny_tokenizer_dir))
