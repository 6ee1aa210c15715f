"""Host memory: let glibc's malloc back XLA:CPU's buffers with transparent huge pages.

XLA:CPU allocates each execution's temporaries afresh (about 3 GB for the full student's train
step at batch 16), and glibc serves allocations that large with new mmaps, so every step faults in
every page again: 548k minor page faults and ~1 s of kernel time per step on the 2-core dev
machine. With glibc's `glibc.malloc.hugetlb=1` tunable (glibc >= 2.35) malloc asks for
transparent huge pages (madvise) on those mappings: 3.8k faults, and the step measured 15 % faster
(BENCHMARKS.md). Tunables are read when a process starts, so the entry points re-execute
themselves once with the tunable set; nothing else about the process changes.

Opt out with CMEMO_MALLOC_HUGEPAGES=0. Skipped off Linux/glibc, on glibc < 2.35, when transparent
huge pages are disabled ('never'), and when GLIBC_TUNABLES already names the tunable.
"""
from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT_ENV = "CMEMO_MALLOC_HUGEPAGES"
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_at_least(major: int, minor: int) -> bool:
    lib, version = platform.libc_ver()
    if lib != "glibc" or not version:
        return False
    try:
        got = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return got >= (major, minor)


def _thp_available() -> bool:
    try:
        with open(_THP_SETTING) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def malloc_hugepages_wanted() -> bool:
    """True when this process should (and could) run with the tunable but does not yet."""
    if os.environ.get(OPT_OUT_ENV, "1") == "0" or sys.platform != "linux":
        return False
    if TUNABLE in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    return _glibc_at_least(2, 35) and _thp_available()


def reexec_with_malloc_hugepages(args: list[str]) -> None:
    """Replaces this process by `python ARGS...` with the tunable added to GLIBC_TUNABLES, if wanted.

    `args` are the interpreter arguments that restart the same program, e.g.
    `["-m", "cmemo_jax.main", *sys.argv[1:]]` or `[script_path, *sys.argv[1:]]`. Returns (doing
    nothing) when not wanted. Call it before any work: the new process starts from scratch.
    """
    if not malloc_hugepages_wanted():
        return
    current = os.environ.get("GLIBC_TUNABLES", "")
    os.environ["GLIBC_TUNABLES"] = f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *args])
