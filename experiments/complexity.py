"""`python experiments/complexity.py ARGS` is `hrnas complexity ARGS` (the code is in hrnas/commands/complexity.py)."""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: experiments/supernet.py would shadow the `supernet` package
    from hrnas.commands.complexity import main

    sys.exit(main())
