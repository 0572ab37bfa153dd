"""`python experiments/supernet.py ARGS` is `hrnas supernet ARGS` (the code is in hrnas/commands/supernet.py)."""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: experiments/supernet.py would shadow the `supernet` package
    from hrnas.commands.supernet import main

    sys.exit(main())
