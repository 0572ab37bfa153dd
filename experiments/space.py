"""`python experiments/space.py ARGS` is `hrnas space ARGS` (the code is in hrnas/commands/space.py)."""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: experiments/supernet.py would shadow the `supernet` package
    from hrnas.commands.space import main

    sys.exit(main())
