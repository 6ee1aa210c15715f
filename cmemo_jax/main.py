"""Entry point: `python -m cmemo_jax.main --config=configs/<phase>.py[:arg] --workdir=DIR`.

Only parses flags, starts multi-host JAX when asked, and dispatches on config.phase; the work is
done in importable modules (cmemo_jax.train.<phase>).
"""
from __future__ import annotations

import importlib

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Phase config file (configs/*.py[:arg]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and exports.")
flags.mark_flags_as_required(["config", "workdir"])

PHASES = {"student": "cmemo_jax.train.student"}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    if not FLAGS["verbosity"].present:
        # Library INFO logs (orbax, clu) drown the progress lines; --verbosity=0 brings them back.
        logging.set_verbosity(logging.WARNING)
    from cmemo_jax.train import distributed

    distributed.initialize_from(config.get("distributed", None))
    if config.phase not in PHASES:
        raise app.UsageError(f"config.phase={config.phase!r} is not one of {sorted(PHASES)}")
    logging.info("phase %s, workdir %s", config.phase, FLAGS.workdir)
    importlib.import_module(PHASES[config.phase]).run(config, FLAGS.workdir)


if __name__ == "__main__":
    import sys

    from cmemo_jax import hostmem

    # Before any work: on CPU hosts, XLA's per-step buffers then come as huge pages (cmemo_jax.hostmem).
    hostmem.reexec_with_malloc_hugepages(["-m", "cmemo_jax.main", *sys.argv[1:]])
    app.run(main)
