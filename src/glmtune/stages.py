"""The stage registry: every list of training stages in glmtune is derived from STAGES.

The CLI's `--stage` choices, `glmtune data inspect`, the data loader's checks, validation, the
web UI's dropdown and `glmtune train` all read it, so a stage is offered everywhere or nowhere.
A record names its data shape (see glmtune/data/shapes.py), collator, model head and recipe
as import paths, so that reading the registry imports neither torch nor the training stack.

Adding a stage: write `train/<stage>.py` with a recipe `run_<stage>(stage, args)`, add one
`Stage(...)` line below, and a data shape in `data/shapes.py` if its data is new.
"""

from dataclasses import dataclass
from typing import Any

from glmtune.errors import look_up
from glmtune.lazy import load_object

CAUSAL_LM = "AutoModelForCausalLM"


@dataclass(frozen=True)
class Stage:
    """One training stage.

    data: the data shape its rows are converted and encoded into (a key of data.shapes.SHAPES).
    collator: "module:callable" that makes the batching function, called with (tokenizer, pad_to_multiple_of);
        None where the trainer batches the rows itself (GRPO generates from them).
    head: the transformers auto class the model loads with.
    recipe: "module:function" run as function(stage, args) by `glmtune train`.
    settings: "module:Class" dataclasses of settings only this stage reads, parsed beside the common ones; a
        class may define problems(training_args) -> list[str] to reject impossible values before any model loads.
    predicts: whether its held-out data has reference answers to generate against (BLEU/ROUGE).
    defaults: (setting, value) pairs this stage starts from instead of the common defaults; flags still win.
    replays: whether it can mix in the starting model's own answers against forgetting (DataArguments.replay).
    """

    name: str
    summary: str
    data: str
    collator: str | None
    recipe: str
    head: str = CAUSAL_LM
    settings: tuple[str, ...] = ()
    predicts: bool = False
    defaults: tuple[tuple[str, Any], ...] = ()
    replays: bool = False

    def load_recipe(self) -> Any:
        return load_object(self.recipe)

    def settings_classes(self) -> tuple[type, ...]:
        return tuple(load_object(path) for path in self.settings)

    def make_collator(self, tokenizer: Any) -> Any:
        assert self.collator is not None, f"stage {self.name}: its trainer batches rows itself"
        return load_object(self.collator)(tokenizer, pad_to_multiple_of=8)


SUPERVISED_COLLATOR = "glmtune.data.collators:SupervisedCollator"
# Stages that learn from their own generated answers sample the policy's own distribution, as their
# probability ratios and KL estimates assume; a user's --temperature/--top_p/--top_k still win.
POLICY_SAMPLING = (("do_sample", True), ("temperature", 1.0), ("top_p", 1.0), ("top_k", 0), ("repetition_penalty", 1.0))

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            name="pt",
            summary="continued pre-training: next-token loss on plain text packed into cutoff_len blocks",
            data="text",
            collator=SUPERVISED_COLLATOR,
            recipe="glmtune.train.sft:run_sft",
        ),
        Stage(
            name="sft",
            summary="supervised fine-tuning: loss on the assistant turns of conversations",
            data="supervised",
            collator=SUPERVISED_COLLATOR,
            recipe="glmtune.train.sft:run_sft",
            predicts=True,
            replays=True,
        ),
        Stage(
            name="rm",
            summary="reward model: a score head trained to rank chosen answers above rejected ones",
            data="pairwise",
            collator="glmtune.data.collators:PairwiseCollator",
            recipe="glmtune.train.rm:run_rm",
            head="AutoModelForSequenceClassification",
        ),
        Stage(
            name="dpo",
            summary="direct preference optimisation: raise chosen answers' likelihood over rejected ones (TRL's DPO)",
            data="pairwise",
            collator="glmtune.data.collators:preference_collator",
            recipe="glmtune.train.dpo:run_dpo",
            settings=("glmtune.hparams.preference_args:PreferenceArguments",),
        ),
        Stage(
            name="kto",
            summary="Kahneman-Tversky optimisation: answers tagged desirable or undesirable, no pairs needed (TRL's KTO)",
            data="tagged",
            collator="glmtune.data.collators:unpaired_preference_collator",
            recipe="glmtune.train.kto:run_kto",
            settings=("glmtune.hparams.preference_args:KTOArguments",),
        ),
        Stage(
            name="grpo",
            summary="GRPO: answers generated per prompt, scored by verifiable rewards, the better made likelier",
            data="prompted",
            collator=None,  # GRPO's trainer batches the rows it generates from itself
            recipe="glmtune.train.grpo:run_grpo",
            settings=("glmtune.hparams.grpo_args:GRPOArguments",),
            defaults=POLICY_SAMPLING,
        ),
        Stage(
            name="ppo",
            summary="PPO: answers generated and scored by a reward model or reward functions, clipped updates, KL to the start",
            data="prompted",
            collator="glmtune.data.collators:prompt_collator",
            recipe="glmtune.train.ppo:run_ppo",
            settings=("glmtune.hparams.ppo_args:PPOArguments",),
            defaults=POLICY_SAMPLING,
        ),
    )
}


def stage_names() -> tuple[str, ...]:
    return tuple(STAGES)


def get_stage(name: str) -> Stage:
    return look_up(STAGES, name, "stage")
