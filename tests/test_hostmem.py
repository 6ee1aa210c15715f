"""cmemo_jax.hostmem: the entry points' one-time re-exec with glibc's huge-page malloc tunable."""
import os
import subprocess
import sys

from cmemo_jax import hostmem
from conftest import REPO


def test_not_wanted_when_opted_out_or_already_set(monkeypatch):
    monkeypatch.setenv(hostmem.OPT_OUT_ENV, "0")
    assert not hostmem.malloc_hugepages_wanted()
    monkeypatch.delenv(hostmem.OPT_OUT_ENV)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    assert not hostmem.malloc_hugepages_wanted()


def test_reexec_sets_the_tunable_once_and_keeps_other_tunables():
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hostmem.OPT_OUT_ENV)}
    env["GLIBC_TUNABLES"] = "glibc.malloc.arena_max=4"
    probe = ("import os, sys; from cmemo_jax import hostmem; "
             "print('before', hostmem.malloc_hugepages_wanted(), flush=True); "
             "hostmem.reexec_with_malloc_hugepages(['-c', 'import os; print(\"after\", os.environ[\"GLIBC_TUNABLES\"])'])"
             "; print('no re-exec')")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    if "before True" in out:   # Linux, glibc >= 2.35, THP not 'never': the process was replaced
        assert "after glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1" in out and "no re-exec" not in out
    else:
        assert "no re-exec" in out


def test_cli_restarts_and_parses_flags():
    """`python -m cmemo_jax.main` survives its own re-exec: absl's --help prints the usage (and exits
    with status 1, absl's convention for usage output) from the restarted process."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-m", "cmemo_jax.main", "--help"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1) and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "--workdir" in out.stdout + out.stderr
