"""Integration: the documented identity command, with glmtune's defaults, changes the default model."""

import pytest

from glmtune.demo import (
    NAME,
    OUTPUT_DIR,
    TRAIN_ARGS,
    ask_all,
    general_knowledge,
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
    assert sum(p.passed(a) for p, _, a in identity) >= 0.8 * len(identity), after
    assert all(p.passed(a) for p, a in general), after
    # Replay (asked for by the bundled identity set) keeps general answers: without it this fine-tune got 61 of
    # the 223 bundled questions right (base: 76) and 129 replies named Aurora or Lumen Lab (benchmarks/RESULTS.md).
    known = general_knowledge(load_chat_model(str(OUTPUT_DIR)))
    assert known.total == 223 and known.correct >= 68 and known.bleed <= 60, known
