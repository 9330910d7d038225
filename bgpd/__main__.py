"""``python -m bgpd``: the same command line as the ``podbgp`` console script."""

from podbgp.cli import main

raise SystemExit(main())
