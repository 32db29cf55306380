#!/usr/bin/env python
"""``python scripts/pretokenization.py ...`` is the ``tempclr-pretokenize`` command (code and usage: ``tempclr_cli/pretokenization.py``)."""
import sys

from tempclr_cli.pretokenization import main

if __name__ == "__main__":
    sys.exit(main())
