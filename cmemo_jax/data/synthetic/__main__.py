"""``python -m cmemo_jax.data.synthetic [CACHE_DIR] [tiny|demo|default]``: generate (or find) a corpus.

CACHE_DIR defaults to ``<default_cache_dir()>/synthetic`` ($CMEMO_CACHE, else ~/.cache/cmemo_jax),
where the trainer looks; the preset defaults to 'default'. Prints the corpus directory.

Also the entry point of the generator processes: ``--worker CONFIG_JSON SPLIT WORKER NUM_WORKERS``
(see ``workers``).
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> None:
    if len(argv) == 5 and argv[0] == "--worker":
        from cmemo_jax.data.synthetic.workers import worker_main

        worker_main(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return
    from cmemo_jax.data.synthetic.config import PRESETS, preset
    from cmemo_jax.data.synthetic.corpus import corpus_root, ensure_corpus

    parser = argparse.ArgumentParser(prog="python -m cmemo_jax.data.synthetic",
                                     description="Generate (or find) the embedded synthetic corpus.")
    parser.add_argument("cache_dir", nargs="?", default=None,
                        help="directory holding the corpora (default: <$CMEMO_CACHE or ~/.cache/cmemo_jax>/synthetic)")
    parser.add_argument("preset", nargs="?", default="default", choices=PRESETS)
    args = parser.parse_args(argv)
    print(ensure_corpus(args.cache_dir or corpus_root(), preset(args.preset), verbose=True))


if __name__ == "__main__":
    main(sys.argv[1:])
