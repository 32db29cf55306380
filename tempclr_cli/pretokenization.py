"""``tempclr-pretokenize``: the command line of :mod:`tempclr.processors.pretokenization` (argument parsing only; the
work and its documentation are there)."""
from __future__ import annotations

import argparse

import tempclr.processors.pretokenization as _library
from tempclr.processors.pretokenization import (  # noqa: F401 (re-exported)
    PAD_ID, caption_arrays, default_prefix, load_bert_tokenizer, load_captions, pretokenize, tokenize_captions,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=_library.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", required=True, help="caption .json or .pkl (id -> start/end/text)")
    parser.add_argument("--tokenizer", required=True, help="BERT tokenizer folder or hub name")
    parser.add_argument("--shard-dir", required=True, help="folder holding the video shards' {split}_meta.pkl")
    parser.add_argument("--prefix", default=None,
                        help="output name prefix (default '<caption stem>.<tokenizer name>.')")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-chars", type=int, default=96)
    args = parser.parse_args(argv)
    counts = pretokenize(args.captions, args.tokenizer, args.shard_dir, args.prefix, args.max_tokens,
                         args.max_chars)
    for split, n in counts.items():
        print(f"{split}: {n} captions tokenised into {args.shard_dir}")


if __name__ == "__main__":
    main()
