"""``python -m podbgp``: the podbgp command line."""

from podbgp.cli import main

raise SystemExit(main())
