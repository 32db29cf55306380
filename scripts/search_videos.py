#!/usr/bin/env python
"""``python scripts/search_videos.py --videos DIR --config CFG "a text query" ...`` is the ``tempclr-search-videos``
command (code and usage: ``tempclr_cli/search_videos.py``)."""
import sys

from tempclr_cli.search_videos import main

if __name__ == "__main__":
    sys.exit(main())
