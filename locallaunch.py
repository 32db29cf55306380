#!/usr/bin/env python
"""Launch tempclr jobs from YAML configs; the same as the ``tempclr-launch`` command.

    python locallaunch.py CONFIG[,CONFIG2,...] [--jobtype local_single|local_small|local_big|local_predict] [--dryrun]

The code and the full usage are in ``tempclr_cli/launch.py``.
"""
import sys

from tempclr_cli.launch import main

if __name__ == "__main__":
    sys.exit(main())
