"""`make demo` trains as the command it shows would: the CLI's process settings, the base model released first."""

import gc
import os
import weakref

import glmtune.demo as demo
from glmtune.model.shape_buckets import ONEDNN_KERNEL_CACHE


class FakeChatModel:
    """Stands in for a loaded model; only its lifetime matters here."""


def test_the_demo_releases_the_base_model_and_sets_the_process_up_as_the_cli_does(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    models, seen_at_training, switched = [], {}, []

    def load_chat_model(adapter):
        model = FakeChatModel()
        models.append(weakref.ref(model))
        return model

    monkeypatch.setattr(demo, "load_chat_model", load_chat_model)
    monkeypatch.setattr(demo, "ask_all", lambda model, probes: ["" for _ in probes])
    monkeypatch.setattr(demo, "general_knowledge", lambda model: demo.Retention(0, 1, 0))
    monkeypatch.setattr(demo, "show", lambda *args: None)
    monkeypatch.setattr("glmtune.cli.keep_freed_memory", lambda: switched.append(True) or True)

    def train(argv):
        gc.collect()
        seen_at_training.update(
            base_alive=models[0]() is not None, switched=bool(switched), onednn=os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"), argv=argv
        )
        return 0

    monkeypatch.setattr("glmtune.train.runner.main", train)
    assert demo.main() == 0
    assert seen_at_training == {"base_alive": False, "switched": True, "onednn": str(ONEDNN_KERNEL_CACHE), "argv": demo.TRAIN_ARGS}
