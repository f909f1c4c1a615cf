"""`python -m core ...`: the command line of the engine (see core/cli.py)."""
import sys

from core.cli import main

if __name__ == "__main__":   # not when a worker process of run_many (spawn) imports this module
    sys.exit(main())
