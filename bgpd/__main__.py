"""``python -m bgpd``: the same command line as the ``podbgp`` console script."""

from bgpd.cli import main

raise SystemExit(main())
