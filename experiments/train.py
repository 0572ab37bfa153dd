"""`python experiments/train.py ARGS` is `hrnas train ARGS` (the code is in hrnas/commands/train.py)."""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: experiments/supernet.py would shadow the `supernet` package
    from hrnas.commands.train import main

    sys.exit(main())
