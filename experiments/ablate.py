"""`python experiments/ablate.py ARGS` is `hrnas ablate ARGS` (the code is in hrnas/commands/ablate.py)."""

import sys

from hrnas.commands.ablate import main

if __name__ == "__main__":
    sys.exit(main())
