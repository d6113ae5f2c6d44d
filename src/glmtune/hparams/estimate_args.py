"""`glmtune estimate`'s own settings: the device memory to check against and how many devices share the run."""

import re
from dataclasses import dataclass, field

UNITS = {"": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


@dataclass
class EstimateArguments:
    device_memory: str | None = field(
        default=None,
        metadata={
            "help": "Memory of one device, e.g. 24GB, 80GiB, 16000MB (GB counts 2^30 bytes, as a 24 GB GPU's "
            "24,564 MiB do; a bare number is GB): prints whether the run fits."
        },
    )
    num_devices: int = field(
        default=1, metadata={"help": "Devices (processes) training together; ZeRO stages divide state by it."}
    )

    def problems(self) -> list[str]:
        problems = []
        if self.device_memory is not None and SIZE.match(self.device_memory) is None:
            problems.append(f"device_memory={self.device_memory}: give a size such as 24GB, 80GiB or 16000MB")
        if self.num_devices < 1:
            problems.append(f"num_devices={self.num_devices}: must be at least 1")
        return problems

    def device_memory_bytes(self) -> int | None:
        match = SIZE.match(self.device_memory or "")
        return int(float(match.group(1)) * UNITS[match.group(2).lower()]) if match else None
