"""`python experiments/export.py ARGS` is `hrnas export ARGS` (the code is in hrnas/commands/export.py)."""

import sys

from hrnas.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
