#!/usr/bin/env python
"""``python scripts/shard_feature.py ...`` is the ``tempclr-shard-features`` command (code and usage: ``tempclr_cli/shard_feature.py``)."""
import sys

from tempclr_cli.shard_feature import main

if __name__ == "__main__":
    sys.exit(main())
