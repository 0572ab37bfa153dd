"""`python experiments/train.py ARGS` is `hrnas train ARGS` (the code is in hrnas/commands/train.py)."""

import sys

from hrnas.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
