"""Large CPU blocks come from the heap and stay there when freed, unless the user chose malloc settings."""

import os
import platform
import subprocess
import sys

import pytest

from glmtune.allocator import keep_freed_memory

# Allocates and frees a 64 MB tensor, then prints: switched, whether it was mmapped, whether the heap kept it.
PROBE = """
import ctypes, sys, torch
from glmtune.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
switched = keep_freed_memory() if sys.argv[1] == "keep" else False
block = torch.ones(64 << 20, dtype=torch.uint8)
mapped = libc.mallinfo2().hblkhd >= 64 << 20
del block
print(switched, mapped, libc.mallinfo2().fordblks >= 64 << 20)
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def probe(mode: str) -> str:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    return subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True).stdout.strip()


@glibc_only
def test_a_large_block_comes_from_the_heap_and_stays_there_when_freed():
    assert probe("default") == "False True False"  # glibc's own: a fresh mapping, unmapped when freed
    assert probe("keep") == "True False True"


@pytest.mark.parametrize("setting", ["MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "LD_PRELOAD"])
def test_malloc_settings_the_user_gave_are_left_alone(monkeypatch, setting):
    monkeypatch.setenv(setting, "2")
    assert keep_freed_memory() is False
