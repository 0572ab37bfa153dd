"""`python experiments/evaluate.py ARGS` is `hrnas evaluate ARGS` (the code is in hrnas/commands/evaluate.py)."""

import sys

from hrnas.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
