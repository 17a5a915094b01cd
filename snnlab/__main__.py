"""`python -m snnlab compare ...`: the same as the `snnlab` console script (see cli.py)."""
from .cli import main

raise SystemExit(main())
