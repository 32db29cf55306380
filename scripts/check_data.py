#!/usr/bin/env python
"""``python scripts/check_data.py CONFIG`` is the ``tempclr-check`` command (code and usage:
``tempclr_cli/check_data.py``)."""
import sys

from tempclr_cli.check_data import main

if __name__ == "__main__":
    sys.exit(main())
