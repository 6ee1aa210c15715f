"""Two JAX processes on localhost train like one process on the same global batches."""
import os
import socket
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_multihost_worker.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def test_two_processes_match_one_process(tmp_path):
    single = tmp_path / "single.npz"
    out = subprocess.run([sys.executable, WORKER, "--out", str(single)], env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]

    multi = tmp_path / "multi.npz"
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, WORKER, "--num_processes", "2", "--process_id", str(i),
                               "--port", str(port), "--out", str(multi)], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        assert "done" in stdout

    a, b = np.load(single), np.load(multi)
    assert set(a.files) == set(b.files) and len(a.files) > 10
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5, atol=1e-6)
    for key in a.files:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)
    # the steps really changed the parameters
    assert not np.allclose(a["losses"][0], a["losses"][-1])
