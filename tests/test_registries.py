"""Every list of stages and of fine-tuning methods in glmtune is the registry's, so none can drift apart."""

import dataclasses

import pytest
from datasets import Dataset

from glmtune.data.loader import load_examples
from glmtune.data.shapes import SHAPES, encode_dataset
from glmtune.data.templates import get_template
from glmtune.errors import ConfigError
from glmtune.hparams.data_args import DataArguments
from glmtune.hparams.entry import get_train_args
from glmtune.hparams.finetuning_args import FinetuningArguments
from glmtune.hparams.help import settings_help
from glmtune.hparams.inspect_args import InspectArguments
from glmtune.hparams.parser import field_choices
from glmtune.methods import METHODS
from glmtune.stages import STAGES, get_stage

STAGE_NAMES = tuple(STAGES)
METHOD_NAMES = tuple(METHODS)


def choices(cls: type, name: str) -> tuple:
    return tuple(field_choices(next(f for f in dataclasses.fields(cls) if f.name == name)))


def test_settings_offer_exactly_the_registered_stages_and_methods():
    assert choices(FinetuningArguments, "stage") == STAGE_NAMES
    assert choices(InspectArguments, "stage") == STAGE_NAMES
    assert choices(FinetuningArguments, "finetuning_type") == METHOD_NAMES
    assert f"one of {', '.join(STAGE_NAMES)}" in settings_help("train")
    assert f"one of {', '.join(STAGE_NAMES)}" in settings_help("data")


def test_the_web_ui_dropdowns_are_the_registries(tmp_path):
    gradio = pytest.importorskip("gradio")
    from glmtune.webui.app import build_app
    from glmtune.webui.workspace import Workspace

    demo = build_app(Workspace(tmp_path))
    dropdowns = {block.label: block for block in demo.blocks.values() if isinstance(block, gradio.Dropdown)}
    assert tuple(value for value, _ in dropdowns["Stage"].choices) == STAGE_NAMES
    assert tuple(value for value, _ in dropdowns["Fine-tuning method"].choices) == METHOD_NAMES
    labels = {block.label for block in demo.blocks.values() if getattr(block, "label", None)}
    own = {f.name for stage in STAGES.values() for cls in stage.settings_classes() for f in dataclasses.fields(cls)}
    assert own <= labels  # each stage's own settings have a field, shown with the stage


@pytest.mark.parametrize("stage", ["rlhf", "reinforce"])
def test_a_stage_without_a_trainer_is_refused_everywhere(stage, tmp_path):
    with pytest.raises(ConfigError, match=f"stage.*{stage}"):
        get_train_args(["--stage", stage, "--dataset", "identity", "--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match=f"unknown stage '{stage}'"):
        load_examples(DataArguments(dataset="identity"), stage)
    from glmtune.hparams.entry import get_inspect_args

    with pytest.raises(ConfigError, match=f"stage.*{stage}"):
        get_inspect_args(["--stage", stage], "identity")


def test_every_record_names_parts_that_exist(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    for stage in STAGES.values():
        assert stage.data in SHAPES
        assert callable(stage.load_recipe())
        assert stage.collator is None or callable(stage.make_collator(tokenizer))
        assert all(dataclasses.is_dataclass(settings) for settings in stage.settings_classes())
        import transformers

        assert hasattr(transformers, stage.head)
    for method in METHODS.values():
        assert callable(method.load_setup())
        assert method.learning_rate > 0


def test_each_stage_loads_and_encodes_its_own_data_shape(tiny_tokenizer_dir):
    """The loader converts for the stage's target and the shape encodes it into its columns."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    for name, stage in STAGES.items():
        bundled = {"pair": "preference", "text": "identity", "response": "kto_demo" if name == "kto" else "identity"}
        dataset = bundled[SHAPES[stage.data].target]  # bundled data of each kind
        data_args = DataArguments(dataset=dataset, cutoff_len=64, template="qwen")
        loaded = load_examples(data_args, name)
        encoded, report = encode_dataset(loaded.train, stage.data, get_template("qwen"), tokenizer, data_args)
        assert set(encoded.column_names) == set(SHAPES[stage.data].columns), name
        assert report.kept > 0 and isinstance(encoded, Dataset)


def test_unknown_names_suggest_the_registered_ones():
    with pytest.raises(ConfigError, match="did you mean sft"):
        get_stage("sfr")
    with pytest.raises(ConfigError, match="invalid choice: 'lroa' \\(choose from 'lora', 'p_tuning'"):
        get_train_args(["--finetuning_type", "lroa", "--dataset", "d"])


def test_each_stages_own_settings_parse_and_are_documented(tmp_path):
    help_text = settings_help("train")
    for name, stage in STAGES.items():
        required = {"grpo": ["--reward_funcs", "math_exact"], "ppo": ["--reward_funcs", "format"]}.get(name, [])  # no default
        args = get_train_args(["--stage", name, "--dataset", "d", "--output_dir", str(tmp_path), *required])
        assert tuple(type(settings) for settings in args.stage_settings) == stage.settings_classes()
        for cls in stage.settings_classes():
            assert all(f"--{f.name} " in help_text for f in dataclasses.fields(cls))
