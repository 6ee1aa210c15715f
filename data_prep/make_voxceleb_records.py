"""Turns EmoVoxCeleb logits + VoxCeleb1 audio into cmemo_jax record shards.

    python data_prep/make_voxceleb_records.py \
        --emovox_mat=senet50-ferplus-logits.mat --voxceleb_wav_dir=VoxCeleb1/wav --out_dir=data/emovox

Writes OUT_DIR/{train,unheard_val,heard_val}.tfrecord-*, dataset_info.json and skipped.txt (one line
per skipped track: "<track_id>\t<reason>"). Missing/corrupt wavs and unusable logits are skipped and
reported, never fatal. The logic lives in cmemo_jax.data.voxceleb_records.build_records.
"""
import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--emovox_mat", required=True, help="senet50-ferplus-logits.mat (v5 or v7.3)")
    p.add_argument("--voxceleb_wav_dir", required=True, help="VoxCeleb1 'wav' directory")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--num_shards_train", type=int, default=64)
    p.add_argument("--num_shards_unheard_val", type=int, default=4)
    p.add_argument("--num_shards_heard_val", type=int, default=4)
    p.add_argument("--limit", type=int, default=None, help="only the first N tracks (trial runs)")
    p.add_argument("--workers", type=int, default=8, help="wav decoding threads")
    args = p.parse_args(argv)

    from cmemo_jax.data.voxceleb_records import build_records

    summary = build_records(
        args.emovox_mat, args.voxceleb_wav_dir, args.out_dir,
        num_shards={"train": args.num_shards_train, "unheard_val": args.num_shards_unheard_val,
                    "heard_val": args.num_shards_heard_val},
        limit=args.limit, workers=args.workers)
    return 0 if sum(summary["num_examples"].values()) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
