#!/usr/bin/env python
"""``python scripts/index_videos.py FEATURE_DIR --config CFG --out INDEX_DIR`` is the ``tempclr-index`` command (code
and usage: ``tempclr_cli/index_videos.py``)."""
import sys

from tempclr_cli.index_videos import main

if __name__ == "__main__":
    sys.exit(main())
