"""`python -m core ...`: the command line of the engine (see core/cli.py)."""
import sys

from core.cli import main

sys.exit(main())
