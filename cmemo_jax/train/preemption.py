"""SIGTERM / SIGINT during training: finish the current step, save, exit cleanly.

Preemptible TPU/GPU machines send SIGTERM before they go; Ctrl-C sends SIGINT. Inside
`StopRequests` either one only sets a flag: the training loop checks it after each step, saves a
checkpoint with the data position, flushes its writers and raises `Interrupted`, which the entry
point turns into a one-line message and exit status 128 + signal number. A second Ctrl-C exits at
once (nothing more is saved).
"""
from __future__ import annotations

import os
import signal
import sys
import threading


class Interrupted(Exception):
    """Training stopped on a signal after saving; `exit_code` is 128 + the signal number."""

    def __init__(self, signum: int, step: int, workdir: str):
        self.signum, self.step, self.exit_code = signum, step, 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"{name}: stopped after step {step} and saved a checkpoint in {workdir}; "
                         f"run the same command again to resume")


class StopRequests:
    """Context manager: while inside, SIGTERM/SIGINT set `signum` instead of killing the process."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            sys.stderr.write("second interrupt: exiting now without saving\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        sys.stderr.write(f"{signal.Signals(signum).name} received: saving a checkpoint after this step "
                         f"(Ctrl-C again to exit at once)\n")
        sys.stderr.flush()

    def __enter__(self):
        # Signal handlers can only be set from the main thread (tests may call fit from others).
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False
