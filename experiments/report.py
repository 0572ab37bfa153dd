"""`python experiments/report.py ARGS` is `hrnas report ARGS` (the code is in hrnas/commands/report.py)."""

import sys

from hrnas.commands.report import main

if __name__ == "__main__":
    sys.exit(main())
