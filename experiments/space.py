"""`python experiments/space.py ARGS` is `hrnas space ARGS` (the code is in hrnas/commands/space.py)."""

import sys

from hrnas.commands.space import main

if __name__ == "__main__":
    sys.exit(main())
