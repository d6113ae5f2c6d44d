"""Read a checkpoint's tensors by name from any of its file layouts; write tensors as sharded safetensors.

Tensors are read lazily (safetensors handles, memory-mapped .bin files) and written shard by
shard, so converting never holds more than one shard of a large model in memory.
"""

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from glmtune.errors import ModelNotFoundError

INDEX_SUFFIX = ".index.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
DEFAULT_SHARD_BYTES = 2 * 10**9


class TensorSource:
    """A folder's weights, whatever their files: one or several .safetensors or .bin, with or without an index."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = weight_files(directory)
        self.location: dict[str, Path] = {}
        self.order: list[str] = []
        self.handles: dict[Path, Any] = {}
        for path in self.files:
            for name in self.handle(path).keys():
                self.location[name] = path
                self.order.append(name)

    def handle(self, path: Path) -> Any:
        """A safetensors reader, or the memory-mapped state dict of a .bin file, opened once."""
        if path not in self.handles:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                self.handles[path] = safe_open(str(path), framework="pt")
            else:
                import torch

                self.handles[path] = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        return self.handles[path]

    def names(self) -> list[str]:
        """Every tensor name, in file order."""
        return list(self.order)

    def get(self, name: str) -> Any:
        handle = self.handle(self.location[name])
        return handle.get_tensor(name) if hasattr(handle, "get_tensor") else handle[name]


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a folder in shard order: an index's shards, else the single file; safetensors first."""
    for single in WEIGHT_FILES:
        index = directory / (single + INDEX_SUFFIX)
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = [directory / name for name in dict.fromkeys(weight_map.values())]
            missing = [path.name for path in files if not path.is_file()]
            if missing:
                raise ModelNotFoundError(f"{index} names shards that are missing: {', '.join(missing)}")
            return files
        if (directory / single).is_file():
            return [directory / single]
    raise ModelNotFoundError(f"{directory} has no weights ({' or '.join(WEIGHT_FILES)}, single or sharded with an index)")


def tensor_bytes(tensor: Any) -> int:
    return tensor.numel() * tensor.element_size()


def group_into_shards(tensors: Iterable[tuple[str, Any]], max_bytes: int) -> Iterator[dict[str, Any]]:
    """Consecutive tensors in groups of at most max_bytes (a larger tensor gets a shard of its own)."""
    shard: dict[str, Any] = {}
    size = 0
    for name, tensor in tensors:
        if shard and size + tensor_bytes(tensor) > max_bytes:
            yield shard
            shard, size = {}, 0
        shard[name] = tensor.contiguous()
        size += tensor_bytes(tensor)
    if shard:
        yield shard


def write_safetensors(tensors: Iterable[tuple[str, Any]], directory: Path, max_bytes: int = DEFAULT_SHARD_BYTES) -> list[Path]:
    """Write tensors as model.safetensors, or as model-0000i-of-0000n.safetensors shards with transformers' index."""
    from safetensors.torch import save_file

    written: list[tuple[Path, list[str]]] = []
    total = 0
    for number, shard in enumerate(group_into_shards(tensors, max_bytes), start=1):
        path = directory / f"shard-{number}.tmp"
        save_file(shard, str(path), metadata={"format": "pt"})
        written.append((path, list(shard)))
        total += sum(tensor_bytes(tensor) for tensor in shard.values())
    if len(written) == 1:
        final = directory / WEIGHT_FILES[0]
        written[0][0].rename(final)
        return [final]
    weight_map: dict[str, str] = {}
    finals = []
    for number, (path, names) in enumerate(written, start=1):
        final = directory / f"model-{number:05d}-of-{len(written):05d}.safetensors"
        path.rename(final)
        finals.append(final)
        weight_map.update(dict.fromkeys(names, final.name))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / (WEIGHT_FILES[0] + INDEX_SUFFIX)).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return finals
