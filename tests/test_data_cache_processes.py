"""The preprocessed-data cache across processes: each run is a new process, so keys must not carry addresses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from glmtune.data import cache
from glmtune.data.templates import TEMPLATES

# One run of a user's training: keys of every template for the same data, then glm4 (tool use) preprocessed
# through the cache, counting the times encoding actually ran.
RUN = """
import json, sys
from datasets import Dataset
from transformers import AutoTokenizer
from glmtune.data import cache
from glmtune.data.templates import TEMPLATES, get_template
from glmtune.hparams.data_args import DataArguments

tokenizer_dir, rows = sys.argv[1], json.loads(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
dataset, args = Dataset.from_list(rows), DataArguments(cutoff_len=64)
keys = {name: cache.cache_key(dataset, "supervised", template, tokenizer, args) for name, template in TEMPLATES.items()}
calls, encode = [], cache.encode_dataset
def counted(*given, **options):
    calls.append(given)
    return encode(*given, **options)
cache.encode_dataset = counted
encoded, report = cache.cached_encode(dataset, "supervised", get_template("glm4"), tokenizer, args)
ids = encoded.to_dict()["input_ids"]
print(json.dumps({"keys": keys, "encoded": len(calls), "input_ids": ids, "kept": report.kept}))
"""
TOOLS = '[{"name": "get_weather", "description": "Current weather", "parameters": {"type": "object"}}]'
ROWS = [
    {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        "system": "",
        "tools": None,
        "source": "qa.jsonl:1",
    },
    {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "function", "content": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
            {"role": "observation", "content": '{"temperature": 22}'},
            {"role": "assistant", "content": "22 °C."},
        ],
        "system": "",
        "tools": TOOLS,
        "source": "qa.jsonl:2",
    },
]


def run(tokenizer_dir: Path, home: Path) -> dict:
    env = {**os.environ, "GLMTUNE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONHASHSEED", None)  # each process hashes strings its own way, as separate runs do
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(tokenizer_dir), json.dumps(ROWS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tiny_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """Two identical runs one after the other, sharing one GLMTUNE_HOME."""
    home = tmp_path_factory.mktemp("glmtune-home")
    return run(tiny_tokenizer_dir, home), run(tiny_tokenizer_dir, home)


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_every_template_keys_the_cache_the_same_in_every_process(runs, name):
    first, second = runs
    assert first["keys"][name] == second["keys"][name]


def test_a_second_identical_run_reads_the_cache(runs):
    first, second = runs
    assert (first["encoded"], second["encoded"]) == (1, 0)
    assert second["input_ids"] == first["input_ids"]
    assert first["kept"] == second["kept"] == len(ROWS)


def test_the_code_digest_covers_every_module_of_the_data_package(tmp_path, monkeypatch):
    package = tmp_path / "data"
    (package / "templates").mkdir(parents=True)
    (package / "templates" / "engine.py").write_text("A = 1\n")
    monkeypatch.setattr(cache, "DATA_PACKAGE", package)
    before = cache.code_digest()
    (package / "split_off.py").write_text("B = 2\n")
    added = cache.code_digest()
    (package / "templates" / "engine.py").write_text("A = 2\n")
    assert len({before, added, cache.code_digest()}) == 3
