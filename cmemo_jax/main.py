"""Entry point: `python -m cmemo_jax.main --config=configs/<phase>.py[:arg] --workdir=DIR`.

Only parses flags, starts multi-host JAX when asked, and dispatches on config.phase to
`cmemo_jax.phases.<phase>.run(config, workdir)`. User-facing failures (cmemo_jax.errors.CmemoError:
bad config, busy workdir, no loadable checkpoint, a non-finite loss) print one line and exit 2;
SIGTERM/SIGINT save a checkpoint and exit with 128 + the signal number.
"""
from __future__ import annotations

import importlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Phase config file (configs/*.py[:arg]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and exports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from cmemo_jax.errors import CmemoError
    from cmemo_jax.phases import PHASES
    from cmemo_jax.train import distributed
    from cmemo_jax.train.preemption import Interrupted

    config = FLAGS.config
    if not FLAGS["verbosity"].present:
        # Library INFO logs (orbax, clu) drown the progress lines; --verbosity=0 brings them back.
        logging.set_verbosity(logging.WARNING)
    if config.get("phase") not in PHASES:
        raise app.UsageError(f"config.phase={config.get('phase')!r} is not one of {sorted(PHASES)}")
    distributed.initialize_from(config.get("distributed", None))
    logging.info("phase %s, workdir %s", config.phase, FLAGS.workdir)
    try:
        importlib.import_module(PHASES[config.phase]).run(config, FLAGS.workdir)
    except Interrupted as stop:
        print(str(stop), file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
    except (CmemoError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def parse_flags(argv):
    """absl flag parsing with one-line errors: a typo'd `--config.x` (ml_collections raises an
    AttributeError with a suggestion) or a bad value should not print three stacked tracebacks."""
    try:
        return FLAGS(argv)
    except flags.Error as err:
        message = str(err)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        # ml_collections wraps its message in a repr: "'\\'batch_sise\\'\\nDid you mean ...'".
        text = str(err).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        message = f"config field not found or not settable: {' '.join(text.split())}"
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def run():
    """Console-script and `python -m` entry: re-exec with huge-page malloc, then absl's app.run."""
    from cmemo_jax import hostmem

    # Before any work: on CPU hosts, XLA's per-step buffers then come as huge pages (cmemo_jax.hostmem).
    hostmem.reexec_with_malloc_hugepages(["-m", "cmemo_jax.main", *sys.argv[1:]])
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
