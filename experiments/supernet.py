"""`python experiments/supernet.py ARGS` is `hrnas supernet ARGS` (the code is in hrnas/commands/supernet.py)."""

import sys
from pathlib import Path

# Python puts this script's folder first on the path, and this file's name is the `supernet` package's: look past it.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from hrnas.commands.supernet import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
