"""``python -m app``: the same command as ``implicit-studio``."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
