#!/usr/bin/env python
"""``python scripts/video_feature_extractor/extract.py ...`` is the ``tempclr-extract`` command (code and usage:
``tempclr_cli/extract.py``)."""
import sys

from tempclr_cli.extract import main

if __name__ == "__main__":
    sys.exit(main())
