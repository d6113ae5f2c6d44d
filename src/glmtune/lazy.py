"""Objects named by "module:name" import paths, imported only when a run needs them.

The stage and method registries name their recipes, collators and setup functions this way, so
that listing stages and methods (settings parsing, `--help`, the web UI) imports no torch.
"""

import importlib
from typing import Any


def load_object(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
