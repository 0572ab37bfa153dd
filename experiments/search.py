"""`python experiments/search.py ARGS` is `hrnas search ARGS` (the code is in hrnas/commands/search.py)."""

import sys

from hrnas.commands.search import main

if __name__ == "__main__":
    sys.exit(main())
