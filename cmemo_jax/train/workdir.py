"""One workdir, one run: a lock naming its holder, and the run's config kept beside its checkpoints.

* `WorkdirLock`: an exclusive `fcntl.flock` on WORKDIR/.lock, held for the life of the process.
  The kernel drops it when the holder dies (kill -9 included), so a stale lock of a dead process is
  simply taken over; the file's text (pid, host, start time) only names the holder in the message.
* `check_config`: the first run writes WORKDIR/config.json; a resume whose config differs in any
  field that changes the result stops with one line naming the fields, unless
  `config.allow_config_change` is set. Operational fields (logging, checkpoint cadence, multi-host
  addresses, caches, the test stop hook) may change freely between resumes.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket

from cmemo_jax.data.tf_io import is_remote
from cmemo_jax.errors import CmemoError

# Fields that do not change what is trained: free to differ between a run and its resume.
RESUME_SAFE_FIELDS = (
    "log_every_steps", "eval_every_steps", "checkpoint_every_steps", "checkpoint_every_secs",
    "keep_checkpoints", "stop_at_step", "export_path", "allow_config_change", "distributed",
    "data.cache_dir", "data.cache_in_ram", "label.batch_size",
)
CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"


class WorkdirError(CmemoError, RuntimeError):
    """A workdir cannot be used (held by another run, not a folder, not writable, other config)."""


def prepare(workdir: str) -> str:
    """Creates `workdir` if needed; one-line errors when it is a URL, a file or not writable."""
    if is_remote(workdir):
        # The lock, config.json and metrics.jsonl are local files (os / fcntl); a URL would silently
        # become a local folder named 'gs:'.
        raise WorkdirError(f"workdir {workdir} is a URL: use a local or mounted folder (a bucket mounted "
                           "with gcsfuse, Google Drive in Colab); records can stay in the bucket")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir} is a file, not a folder")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"workdir {workdir}: cannot create it ({e.strerror})") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {workdir} is not writable")
    return workdir


class WorkdirLock:
    """Exclusive lock of a workdir for this process; `release()` or process exit frees it."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 512, 0).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            raise WorkdirError(f"workdir {workdir} is in use by {holder}; wait for it to finish, stop it, "
                               f"or use another --workdir") from None
        started = datetime.datetime.now().isoformat(timespec="seconds")
        text = f"pid {os.getpid()} on {socket.gethostname()} (started {started})\n".encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    def release(self):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _is_safe(name: str) -> bool:
    """A safe field, also inside a phase block of the pipeline config ('student.log_every_steps')."""
    parts = name.split(".")
    suffixes = {".".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}
    return any(f in suffixes for f in RESUME_SAFE_FIELDS)


def config_differences(old: dict, new: dict) -> list[str]:
    """Dotted names of result-changing fields whose values differ (added or removed included)."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if not _is_safe(k) and a.get(k) != b.get(k))


def check_config(workdir: str, config_dict: dict, allow_change: bool = False) -> None:
    """Writes WORKDIR/config.json on the first run; on a resume, stops if the config changed."""
    path = os.path.join(workdir, CONFIG_FILE)
    new = json.loads(json.dumps(config_dict, default=str))  # tuples -> lists, as stored
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        diff = config_differences(old, new)
        if diff and not allow_change:
            shown = ", ".join(f"{k} ({_flatten(old).get(k)!r} -> {_flatten(new).get(k)!r})" for k in diff[:6])
            raise WorkdirError(f"workdir {workdir} holds a run with another config: {shown}"
                               f"{' ...' if len(diff) > 6 else ''}; resume with the same config, use another "
                               f"--workdir, or pass --config.allow_config_change=True")
        if not diff:
            return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(new, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def trim_metrics_log(path: str, last_step: int) -> None:
    """Drops metrics.jsonl rows of steps after `last_step` (replayed after a resume, logged again)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= last_step]
    if len(kept) != len(lines):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, path)


@contextlib.contextmanager
def exclusive_run(workdir: str, config):
    """The whole of a phase's run: workdir checked and locked, config recorded or compared.

    In multi-host runs process 0 holds the lock and keeps the config (the workdir is shared).
    """
    import jax

    prepare(workdir)
    if jax.process_index() != 0:
        yield
        return
    lock = WorkdirLock(workdir)
    try:
        check_config(workdir, config.to_dict(), allow_change=bool(config.get("allow_config_change", False)))
        yield
    finally:
        lock.release()
