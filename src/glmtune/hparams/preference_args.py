"""Settings of the preference stages (dpo, kto): how strongly to prefer good answers, and with which loss."""

from dataclasses import dataclass, field
from typing import Any

# sigmoid is DPO itself, ipo and hinge its variants (TRL's DPOTrainer); orpo and simpo need no reference model.
PREFERENCE_LOSSES = ("sigmoid", "ipo", "hinge", "orpo", "simpo")


@dataclass
class PreferenceArguments:
    pref_beta: float = field(
        default=0.1, metadata={"help": "How far the policy may move from the reference (DPO's beta; alias: dpo_beta)."}
    )
    pref_loss: str = field(default="sigmoid", metadata={"help": "Preference loss.", "choices": PREFERENCE_LOSSES})
    pref_ftx: float = field(
        default=0.0, metadata={"help": "Weight of an added SFT loss on the chosen answers (0: none)."}
    )

    def problems(self, training_args: Any) -> list[str]:
        problems = []
        if self.pref_beta <= 0:
            problems.append(f"pref_beta={self.pref_beta}: must be > 0")
        if self.pref_ftx < 0:
            problems.append(f"pref_ftx={self.pref_ftx}: must be >= 0 (0 adds no SFT loss)")
        if self.pref_loss == "orpo" and self.pref_ftx:
            problems.append("pref_loss=orpo has its SFT term built in: drop pref_ftx")
        return problems


@dataclass
class KTOArguments:
    pref_beta: float = field(
        default=0.1, metadata={"help": "How far the policy may move from the reference (KTO's beta)."}
    )
    kto_chosen_weight: float = field(default=1.0, metadata={"help": "Weight of the loss on desirable answers."})
    kto_rejected_weight: float = field(default=1.0, metadata={"help": "Weight of the loss on undesirable answers."})

    def problems(self, training_args: Any) -> list[str]:
        problems = [f"pref_beta={self.pref_beta}: must be > 0"] if self.pref_beta <= 0 else []
        if training_args.per_device_train_batch_size < 2:
            # KTO's KL term compares each prompt with another row's completion in the same batch
            problems.append("stage kto needs per_device_train_batch_size of at least 2")
        for name in ("kto_chosen_weight", "kto_rejected_weight"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)}: must be > 0")
        return problems
