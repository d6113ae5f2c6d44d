"""Settings of `glmtune data inspect`: how many samples to show, and which stage's encoding."""

from dataclasses import dataclass, field

from glmtune.stages import stage_names


@dataclass
class InspectArguments:
    num_samples: int = field(default=3, metadata={"help": "How many samples to show.", "aliases": ["-n"]})
    stage: str = field(
        default="sft",
        metadata={"help": f"Which stage's preprocessing to show ({', '.join(stage_names())}).", "choices": stage_names()},
    )
