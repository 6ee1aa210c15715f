"""Turns EmoVoxCeleb logits + VoxCeleb1 audio into cmemo_jax record shards.

    python data_prep/make_voxceleb_records.py \
        --emovox_mat=senet50-ferplus-logits.mat --voxceleb_wav_dir=VoxCeleb1/wav --out_dir=data/emovox

Writes OUT_DIR/{train,unheard_val,heard_val}.tfrecord-*, dataset_info.json (which lists the shard
files of each split), skipped.txt (one line per skipped track: "<track_id>\t<reason>") and
repaired.txt (tracks whose float audio was rescaled to full scale). Missing, corrupt, truncated or
NaN-holding wavs, unusable logits and audio whose length disagrees with its logit rows are skipped
and reported, never fatal; every good track is written.

OUT_DIR must be absent or empty; --overwrite replaces its whole content once the new output is
complete (it is built in OUT_DIR.tmp-<pid> beside it and swapped in), so a rerun with other shard
counts never leaves old shards behind. Exit status: 0 when tracks were written, 1 when none were,
2 when the inputs or OUT_DIR are refused. The logic lives in
cmemo_jax.data.voxceleb_records.build_records (rules in its docstring).
"""
import argparse
import sys


def main(argv=None) -> int:
    from cmemo_jax.data.emovoxceleb import DURATION_TOLERANCE_S

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--emovox_mat", required=True, help="senet50-ferplus-logits.mat (v5 or v7.3)")
    p.add_argument("--voxceleb_wav_dir", required=True, help="VoxCeleb1 'wav' directory")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out_dir (all of its content) when the new output is complete")
    p.add_argument("--num_shards_train", type=int, default=64)
    p.add_argument("--num_shards_unheard_val", type=int, default=4)
    p.add_argument("--num_shards_heard_val", type=int, default=4)
    p.add_argument("--limit", type=int, default=None, help="only the first N tracks (trial runs)")
    p.add_argument("--workers", type=int, default=8, help="wav decoding threads")
    p.add_argument("--duration_tolerance_s", type=float, default=DURATION_TOLERANCE_S,
                   help="skip tracks whose audio length differs from rows * 0.24 s by more than this")
    args = p.parse_args(argv)

    from cmemo_jax.data.voxceleb_records import build_records

    try:
        summary = build_records(
            args.emovox_mat, args.voxceleb_wav_dir, args.out_dir,
            num_shards={"train": args.num_shards_train, "unheard_val": args.num_shards_unheard_val,
                        "heard_val": args.num_shards_heard_val},
            limit=args.limit, workers=args.workers, overwrite=args.overwrite,
            duration_tolerance_s=args.duration_tolerance_s)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if sum(summary["num_examples"].values()) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
