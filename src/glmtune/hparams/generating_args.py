"""Decoding settings shared by chat, API, web UI and predict-with-generate."""

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class GeneratingArguments:
    do_sample: bool = field(default=True, metadata={"help": "Sample; false or temperature 0 decodes greedily."})
    temperature: float = field(default=0.95, metadata={"help": "Sampling temperature; 0 means greedy."})
    top_p: float = field(default=0.7, metadata={"help": "Nucleus sampling: keep the smallest set above top_p."})
    top_k: int = field(default=50, metadata={"help": "Keep only the top_k most likely tokens (0 disables)."})
    num_beams: int = field(default=1, metadata={"help": "Beam search width; 1 disables beam search."})
    max_new_tokens: int = field(default=512, metadata={"help": "Most tokens generated per answer."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Above 1.0 discourages repeats."})
    length_penalty: float = field(default=1.0, metadata={"help": "Beam search length penalty."})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
