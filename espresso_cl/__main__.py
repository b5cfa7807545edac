"""``python -m espresso_cl``: the command line (:mod:`espresso_cl.cli`)."""

import sys

from .cli import main

sys.exit(main())
