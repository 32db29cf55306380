"""Cost of the start-up data checks (:func:`tempclr.datasets.integrity.scan_split`) on a synthetic HowTo100M-style
split, next to what start-up read before (the shard meta and every shard's offsets, ``ShardedTensor.load``).

Writes ``n_videos`` videos of ``[T, 512]`` float16 features (T uniform in ``t_min..t_max``) as shards of
``shard_size`` with the shard record, a split list, and caption shards (``n_caps`` captions per video: float32
times ``[n, 2]``, int32 token ids ``[n, 32]``), all through the project's own writers.  Then, best of ``repeat``:

- ``before``: the shard meta, every video and caption shard opened with ``ShardedTensor.load`` (offsets checked);
- ``video checks``: ``scan_split`` without the caption shards (list and meta duplicates, offsets, the record:
  ids, row counts, CRC-32 of the first and last row of every video);
- ``all checks``: ``scan_split`` with the caption shards (caption times against the video, token ids against the
  vocabulary), what training runs when the caption shards hold at most 256 MiB.

Files are freshly written, so every method reads from the OS page cache (warm); a first training start on a
cold disk also pays one random read per video for the first/last rows.  Usage::

    python benchmarks/bench_integrity.py [--n-videos 20000] [--shard-size 4096]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from omegaconf import OmegaConf

from tempclr.datasets.integrity import scan_split
from tempclr.utils.fileio import write_pickle_atomic
from tempclr.utils.shard_record import record_path, row_checksums, write_record
from tempclr.utils.shardedtensor import ShardedTensor, write_sharded

TEXT_PREFIX = "caps."


def make_split(folder: str, n_videos: int, shard_size: int, t_min: int, t_max: int, n_caps: int,
               rng: np.random.Generator) -> int:
    """Write the split into ``folder``; returns the bytes of video data written."""
    ids = [f"video{i:07d}" for i in range(n_videos)]
    lengths = rng.integers(t_min, t_max + 1, n_videos)
    meta, first, last = {}, np.zeros(n_videos, np.uint32), np.zeros(n_videos, np.uint32)
    shard_of, index_of = np.zeros(n_videos, np.int64), np.zeros(n_videos, np.int64)
    for k, begin in enumerate(range(0, n_videos, shard_size)):
        end = min(begin + shard_size, n_videos)

        def arrays():
            for i in range(begin, end):
                feats = rng.standard_normal((int(lengths[i]), 512)).astype(np.float16)
                first[i], last[i] = row_checksums(feats, np.array([0, len(feats) - 1]))
                yield feats

        write_sharded(os.path.join(folder, f"train_{k}"), lengths[begin:end].tolist(), (512,), np.float16, arrays())
        times = [np.sort(rng.uniform(0, int(lengths[i]), (n_caps, 2)), axis=1).astype(np.float32)
                 for i in range(begin, end)]
        caps = [rng.integers(0, 30000, (n_caps, 32)).astype(np.int32) for _ in range(begin, end)]
        ShardedTensor.from_list(times).save(os.path.join(folder, f"{TEXT_PREFIX}train_{k}.startends"))
        ShardedTensor.from_list(caps).save(os.path.join(folder, f"{TEXT_PREFIX}train_{k}.caps_ids"))
        meta[k] = ids[begin:end]
        shard_of[begin:end], index_of[begin:end] = k, np.arange(end - begin)
    write_pickle_atomic(os.path.join(folder, "train_meta.pkl"), meta)
    write_record(record_path(folder, "train"), ids, shard_of, index_of, lengths, first, last)
    with open(os.path.join(folder, "train.lst"), "w") as f:
        f.write("".join(v + "\n" for v in ids))
    return int(lengths.sum()) * 512 * 2


def best_of(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-videos", type=int, default=20000)
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--t-min", type=int, default=8)
    parser.add_argument("--t-max", type=int, default=24)
    parser.add_argument("--n-caps", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        size = make_split(folder, args.n_videos, args.shard_size, args.t_min, args.t_max, args.n_caps,
                          np.random.default_rng(0))
        dataset = OmegaConf.create({"meta_processor": "ShardedHow2MetaProcessor", "train_path":
                                    os.path.join(folder, "train.lst"), "vfeat_dir": folder})
        with_text = OmegaConf.create(dict(dataset, tfeat_dir=os.path.join(folder, TEXT_PREFIX)))
        n_shards = -(-args.n_videos // args.shard_size)

        def before():
            from tempclr.utils.safe_pickle import load_pickle
            load_pickle(os.path.join(folder, "train_meta.pkl"))
            for k in range(n_shards):
                for prefix in (f"train_{k}", f"{TEXT_PREFIX}train_{k}.startends", f"{TEXT_PREFIX}train_{k}.caps_ids"):
                    ShardedTensor.load(os.path.join(folder, prefix))

        def checks(config):
            report = scan_split(config, "train", vocab_size=30522)
            assert not report.faults and not report.warnings, (report.faults[:3], report.warnings)

        rows = [("before (meta + ShardedTensor.load)", best_of(args.repeat, before)),
                ("video checks", best_of(args.repeat, lambda: checks(dataset))),
                ("all checks (with caption values)", best_of(args.repeat, lambda: checks(with_text)))]
        print(f"{args.n_videos} videos, {size / 2**20:.0f} MiB of video features, {n_shards} shard(s), "
              f"{args.n_caps} captions per video")
        print("| what | seconds | us per video |")
        print("|---|---|---|")
        for name, seconds in rows:
            print(f"| {name} | {seconds:.3f} | {seconds / args.n_videos * 1e6:.1f} |")


if __name__ == "__main__":
    main()
