"""`python -m rr -c FILE` is `podbgp rr -c FILE`."""

import sys

from podbgp.cli import main

sys.exit(main(["rr", *sys.argv[1:]]))
