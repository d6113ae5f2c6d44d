"""Settings of the preference stages (dpo): how strongly to prefer chosen answers, and with which loss."""

from dataclasses import dataclass, field

# TRL DPOTrainer's loss types that glmtune offers: sigmoid is DPO itself, ipo and hinge its variants.
PREFERENCE_LOSSES = ("sigmoid", "ipo", "hinge")


@dataclass
class PreferenceArguments:
    pref_beta: float = field(
        default=0.1, metadata={"help": "How far the policy may move from the reference (DPO's beta; alias: dpo_beta)."}
    )
    pref_loss: str = field(default="sigmoid", metadata={"help": "Preference loss.", "choices": PREFERENCE_LOSSES})
    pref_ftx: float = field(
        default=0.0, metadata={"help": "Weight of an added SFT loss on the chosen answers (0: none)."}
    )

    def problems(self) -> list[str]:
        problems = []
        if self.pref_beta <= 0:
            problems.append(f"pref_beta={self.pref_beta}: must be > 0")
        if self.pref_ftx < 0:
            problems.append(f"pref_ftx={self.pref_ftx}: must be >= 0 (0 adds no SFT loss)")
        return problems
