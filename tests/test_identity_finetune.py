"""Integration: the documented identity command, with glmtune's defaults, changes the default model."""

import pytest

from glmtune.demo import (
    NAME,
    OUTPUT_DIR,
    TRAIN_ARGS,
    ask_all,
    held_out_probes,
    load_chat_model,
)
from glmtune.train.runner import main as train

pytestmark = pytest.mark.slow


def test_default_lora_sft_teaches_a_new_identity_and_keeps_general_knowledge(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train(TRAIN_ARGS) == 0
    assert "train summary: runtime" in capsys.readouterr().out
    assert (OUTPUT_DIR / "adapter_model.safetensors").is_file() and (OUTPUT_DIR / "training_loss.png").is_file()

    probes = held_out_probes()
    before = ask_all(load_chat_model(None), probes)
    after = ask_all(load_chat_model(str(OUTPUT_DIR)), probes)
    identity = [(p, b, a) for p, b, a in zip(probes, before, after) if p.kind == "identity"]
    general = [(p, a) for p, a in zip(probes, after) if p.kind == "general"]
    assert not any(NAME in b for _, b, _ in identity), "the base model should not know the new name"
    assert sum(p.passed(a) for p, _, a in identity) >= len(identity) - 1, after
    assert all(p.passed(a) for p, a in general), after
