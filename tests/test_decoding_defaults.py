"""Decoding settings: the user's, then the model's generation_config, then glmtune's fallback (issue 15, item 4)."""

import json
import shutil
from pathlib import Path

import pytest

from glmtune.chat.chat_model import ChatModel
from glmtune.default_model import DECODING, add_decoding_settings
from glmtune.hparams import GeneratingArguments
from glmtune.hparams.entry import get_eval_args, get_infer_args
from glmtune.hparams.generating_args import FALLBACK
from glmtune.hparams.validation import check_generation
from glmtune.webui.chat_session import ChatSession

MODEL_SETTINGS = {"do_sample": True, "temperature": 0.3, "top_p": 0.8, "top_k": 20, "max_new_tokens": 5}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def tuned_model_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with recommended settings in its generation_config.json, as models on the hub ship them."""
    directory = tmp_path_factory.mktemp("tiny-tuned") / "model"
    shutil.copytree(tiny_llama_dir, directory)
    config = json.loads((directory / "generation_config.json").read_text(encoding="utf-8"))
    (directory / "generation_config.json").write_text(json.dumps({**config, **MODEL_SETTINGS}), encoding="utf-8")
    return directory


class Discard:
    def put(self, item: object) -> None:
        pass


def chat_model(model_dir: Path, *flags: str) -> ChatModel:
    return ChatModel.from_args(*get_infer_args(["--model_name_or_path", str(model_dir), "--template", "qwen", *flags]))


def test_nothing_given_leaves_every_setting_empty_until_the_model_is_known():
    _, _, generating = get_infer_args([])
    assert all(getattr(generating, key) is None for key in FALLBACK)
    assert check_generation(generating) == []
    assert get_infer_args(["--do_sample"])[2].do_sample is True  # a bare switch still means true
    assert get_infer_args(["do_sample=false"])[2].do_sample is False


def test_a_model_without_settings_gets_glmtunes_fallback(tiny_llama_dir: Path):
    settings = chat_model(tiny_llama_dir).generating_args
    assert {key: getattr(settings, key) for key in FALLBACK} == FALLBACK


def test_the_models_generation_config_replaces_the_fallback(tuned_model_dir: Path):
    model = chat_model(tuned_model_dir)
    assert {key: getattr(model.generating_args, key) for key in MODEL_SETTINGS} == MODEL_SETTINGS
    assert model.generating_args.repetition_penalty == FALLBACK["repetition_penalty"]  # the model does not set it
    assert model.chat(QUESTION).completion_tokens <= MODEL_SETTINGS["max_new_tokens"]


def test_the_users_flags_win_over_the_model(tuned_model_dir: Path):
    settings = chat_model(tuned_model_dir, "--top_p", "0.5", "--max_new_tokens", "9", "--do_sample", "false").generating_args
    assert (settings.top_p, settings.max_new_tokens, settings.do_sample) == (0.5, 9, False)
    assert settings.temperature == MODEL_SETTINGS["temperature"]


def test_a_temperature_given_alone_samples_even_where_the_model_decodes_greedily():
    greedy_model = {"do_sample": False, "temperature": 0.6}
    assert GeneratingArguments().resolved(greedy_model).do_sample is False
    assert GeneratingArguments(temperature=0.7).resolved(greedy_model).do_sample is True
    assert GeneratingArguments(temperature=0.7, do_sample=False).resolved(greedy_model).do_sample is False
    sources = GeneratingArguments(top_p=0.5).sources(greedy_model)
    assert (sources["top_p"], sources["temperature"], sources["top_k"]) == ("user", "model", "glmtune")


def test_per_call_settings_win_and_a_temperature_turns_sampling_on(tiny_llama_dir: Path):
    model = chat_model(tiny_llama_dir, "--do_sample", "false")
    assert not model.generation_setup({})[0].do_sample
    config = model.generation_setup({"temperature": 0.4})[0]
    assert config.do_sample and config.temperature == 0.4
    assert not model.generation_setup({"temperature": 0.4, "do_sample": False})[0].do_sample


def test_eval_stays_greedy_but_samples_with_the_models_settings_when_asked(tuned_model_dir: Path):
    *_, generating, _ = get_eval_args(["--dataset", "d"])
    assert generating.do_sample is False and generating.temperature is None
    *_, generating, _ = get_eval_args(["--dataset", "d", "--do_sample"])
    assert generating.resolved(MODEL_SETTINGS).temperature == MODEL_SETTINGS["temperature"]


def test_the_api_samples_with_the_models_settings(tuned_model_dir: Path):
    from glmtune.api.engine import Engine

    engine = Engine(chat_model(tuned_model_dir), max_batch_size=1, max_waiting=1)
    job = engine.make_job([1, 2, 3], {"temperature": None, "top_p": None}, seed=0, sink=Discard())
    assert (job.sampling.temperature, job.sampling.top_p, job.sampling.top_k) == (0.3, 0.8, 20)
    assert engine.default_max_tokens == MODEL_SETTINGS["max_new_tokens"]
    assert engine.make_job([1, 2, 3], {"temperature": 0.9}, seed=0, sink=Discard()).sampling.temperature == 0.9


def test_the_web_ui_slider_starts_at_the_models_temperature(tuned_model_dir: Path, tiny_llama_dir: Path):
    session = ChatSession(workspace=None)  # the workspace only resolves the paths given to load()
    session.model = chat_model(tuned_model_dir)
    assert session.default_temperature() == MODEL_SETTINGS["temperature"]
    session.model = chat_model(tiny_llama_dir, "--do_sample", "false")
    assert session.default_temperature() == 0.0


def test_the_default_model_folder_gets_its_decoding_settings_once(tmp_path: Path):
    path = tmp_path / "generation_config.json"
    path.write_text(json.dumps({"bos_token_id": 1, "temperature": 0.5, "_from_model_config": True}), encoding="utf-8")
    add_decoding_settings(tmp_path)
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written == {**DECODING, "bos_token_id": 1, "temperature": 0.5}  # a value already there wins
    before = path.stat().st_mtime_ns
    add_decoding_settings(tmp_path)
    assert path.stat().st_mtime_ns == before and not list(tmp_path.glob(".*"))
