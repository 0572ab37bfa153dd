"""`python experiments/export.py ARGS` is `hrnas export ARGS` (the code is in hrnas/commands/export.py)."""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: experiments/supernet.py would shadow the `supernet` package
    from hrnas.commands.export import main

    sys.exit(main())
