"""`python experiments/report.py ARGS` is `hrnas report ARGS` (the code is in hrnas/commands/report.py)."""

import sys

if __name__ == "__main__":
    del sys.path[0]  # this script's folder: experiments/supernet.py would shadow the `supernet` package
    from hrnas.commands.report import main

    sys.exit(main())
