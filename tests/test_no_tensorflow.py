"""Models, front-end, losses, the train step and the loop import and run without TensorFlow.

The lent GPU machine has no TensorFlow (docs/method.md §6); only cmemo_jax/data imports it, lazily.
"""
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SNIPPET = textwrap.dedent("""
    import sys
    sys.modules["tensorflow"] = None  # any import of tensorflow now raises
    sys.path.insert(0, {tests!r})
    import jax, numpy as np
    from conftest import load_config
    from cmemo_jax import export, losses
    from cmemo_jax.audio import spectrogram
    from cmemo_jax.models import Student
    from cmemo_jax.train import loop, optim, sharding, step
    from cmemo_jax.tasks.student import StudentObjective
    cfg = load_config("student", "tiny")
    obj = StudentObjective(cfg)
    mesh = sharding.make_mesh()
    tx = optim.make_optimizer(cfg.optim, 2)
    st = step.init_state(obj, tx, jax.random.key(0), obj.example_batch(), mesh)
    train_step = step.make_train_step(obj, tx, mesh)
    batch = sharding.device_batch(obj.random_batch(np.random.default_rng(0)), mesh)
    st, metrics = train_step(st, batch, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    print("trained without tensorflow")
""")


def test_train_step_runs_without_tensorflow():
    code = SNIPPET.format(tests=os.path.join(REPO, "tests"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trained without tensorflow" in out.stdout
