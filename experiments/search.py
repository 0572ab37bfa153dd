"""`python experiments/search.py ARGS` is `hrnas search ARGS` (the code is in hrnas/commands/search.py)."""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: experiments/supernet.py would shadow the `supernet` package
    from hrnas.commands.search import main

    sys.exit(main())
