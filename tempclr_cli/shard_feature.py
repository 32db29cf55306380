"""``tempclr-shard-features``: the command line of :mod:`tempclr.processors.sharding` (argument parsing only; the work
and its documentation are there)."""
from __future__ import annotations

import argparse

import tempclr.processors.sharding as _library
from tempclr.processors.sharding import read_video_list, shard_features, shard_split  # noqa: F401 (re-exported)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=_library.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feat-dir", required=True, help="folder of per-video <id>.npy features")
    parser.add_argument("--train-list", required=True, help="train split list, one video id per line")
    parser.add_argument("--val-list", required=True, help="val split list, one video id per line")
    parser.add_argument("--shard-dir", required=True, help="output folder for shards and meta pickles")
    parser.add_argument("--shard-size", type=int, default=4096, help="videos per shard (default 4096)")
    args = parser.parse_args(argv)
    metas = shard_features(args.feat_dir, args.train_list, args.val_list, args.shard_dir, args.shard_size)
    for split, meta in metas.items():
        print(f"{split}: {sum(len(v) for v in meta.values())} videos in {len(meta)} shard(s) -> {args.shard_dir}")


if __name__ == "__main__":
    main()
