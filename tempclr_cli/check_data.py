"""``tempclr-check``: the command line of :mod:`tempclr.datasets.check` (argument parsing only; the work and its
documentation are there)."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Tuple

from tempclr.utils.config_schema import ConfigError

import tempclr.datasets.check as _library
from tempclr.datasets.check import check_dataset  # noqa: F401 (re-exported)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=_library.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a tempclr YAML config (its dataset section is scanned)")
    parser.add_argument("--max-items", type=int, default=None, help="read at most this many items per split")
    args = parser.parse_args(argv)
    notes: List[Tuple[str, str]] = []
    try:
        problems = check_dataset(args.config, args.max_items, notes=notes)
    except ConfigError as error:  # the config itself is wrong: say so, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    for split, note in notes:
        print(f"[{split}] not checked: {note}")
    for split, item, problem in problems:
        print(f"[{split}] {item}: {problem}")
    print(f"{args.config}: {len(problems)} problem(s) found" if problems else f"{args.config}: no problem found")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
