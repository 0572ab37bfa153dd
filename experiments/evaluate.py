"""`python experiments/evaluate.py ARGS` is `hrnas evaluate ARGS` (the code is in hrnas/commands/evaluate.py)."""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: experiments/supernet.py would shadow the `supernet` package
    from hrnas.commands.evaluate import main

    sys.exit(main())
