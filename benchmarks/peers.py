"""Finding the peer (LLaMA-Factory) interpreter that benchmarks compare glmtune against."""

import importlib.util
import sys


def peer_python(requested: str | None) -> str | None:
    """The interpreter given by --peer-python, else this one when llamafactory imports here, else none."""
    if requested:
        return requested
    return sys.executable if importlib.util.find_spec("llamafactory") else None
