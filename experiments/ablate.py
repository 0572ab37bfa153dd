"""`python experiments/ablate.py ARGS` is `hrnas ablate ARGS` (the code is in hrnas/commands/ablate.py)."""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: experiments/supernet.py would shadow the `supernet` package
    from hrnas.commands.ablate import main

    sys.exit(main())
