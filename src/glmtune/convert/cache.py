"""A ChatGLM- or Baichuan-layout folder given as a model is converted once into $GLMTUNE_HOME and used from there.

The cache key is a hash of the folder's content: config.json in full, and each weight file's
name, size and first and last MiB. Re-reading a 12 GB checkpoint on every load would cost
more than the load itself; a retrained or re-downloaded checkpoint differs in those bytes.
"""

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from glmtune.convert.baichuan import convert_baichuan
from glmtune.convert.chatglm import convert_chatglm
from glmtune.convert.checkpoint_io import weight_files
from glmtune.convert.layout import BAICHUAN, CHATGLM, folder_layout
from glmtune.paths import glmtune_home, is_complete, mark_complete

logger = logging.getLogger(__name__)
SAMPLE_BYTES = 1 << 20
# Part of the key: a conversion that now writes more (a fast tokenizer, a new layout) is redone, not reused.
CONVERSION_FORMAT = b"2"
CONVERTERS = {CHATGLM: convert_chatglm, BAICHUAN: convert_baichuan}


def content_key(source: Path) -> str:
    digest = hashlib.sha256(CONVERSION_FORMAT + (source / "config.json").read_bytes())
    for path in weight_files(source):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as file:
            digest.update(file.read(SAMPLE_BYTES))
            file.seek(max(size - SAMPLE_BYTES, 0))
            digest.update(file.read(SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def converted_dir(source: Path) -> Path:
    return glmtune_home() / "converted" / f"{source.resolve().name}-{content_key(source)}"


def native_model_dir(source: Path) -> Path:
    """`source` itself when transformers loads it natively, else its converted copy, converting on first use."""
    layout = folder_layout(source)
    if layout is None:
        return source
    target = converted_dir(source)
    if is_complete(target):
        return target
    logger.info("%s is a %s checkpoint: converting it once to a native transformers model in %s", source, layout, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        CONVERTERS[layout](source, work_dir)
        mark_complete(work_dir, f"converted from {source}")
        work_dir.chmod(0o755)
        if target.exists():  # a conversion cut off half-way
            shutil.rmtree(target)
        try:
            work_dir.rename(target)
        except OSError:  # another process finished the same conversion first
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return target
