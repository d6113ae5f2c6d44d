"""Layers point one way: a module imports only from its own layer or the layers below it.

Imports inside functions count too: a lazy import is still a dependency. The order follows the
data flow: settings and registries, where model files come from (and their conversion to native layouts), data, model, the chat engine
(which evaluation generates with), evaluation, training (which can predict after training),
and the front ends.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "glmtune"
LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths", "lazy", "allocator", "stages", "methods", "metrics_file", "logs", "precision", "hparams"),
    ("default_model", "convert", "model_source"),
    ("data",),
    ("model",),
    ("chat",),
    ("eval",),
    ("train",),
    ("api", "webui", "cli", "demo", "env", "__main__", "__init__"),
]


def layer_of(module: str) -> int:
    """The layer of a glmtune module given by its dotted name inside the package ("data.loader")."""
    top = module.split(".")[0]
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"glmtune.{module} belongs to no layer: add it to LAYERS")


def glmtune_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("glmtune."):
            found.add(node.module.removeprefix("glmtune."))
        elif isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("glmtune.") for alias in node.names if alias.name.startswith("glmtune."))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_no_module_imports_from_a_layer_above_its_own(path: Path):
    module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    own = layer_of(module)
    upward = sorted(name for name in glmtune_imports(path) if layer_of(name) > own)
    assert not upward, f"glmtune.{module} (layer {own}) imports from layers above it: {upward}"


def test_every_module_stays_small():
    """A module past ~400 lines is doing two jobs."""
    long = {path.relative_to(PACKAGE).as_posix(): n for path in MODULES if (n := len(path.read_text().splitlines())) > 400}
    assert not long
