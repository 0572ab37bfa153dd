"""`python experiments/complexity.py ARGS` is `hrnas complexity ARGS` (the code is in hrnas/commands/complexity.py)."""

import sys

from hrnas.commands.complexity import main

if __name__ == "__main__":
    sys.exit(main())
