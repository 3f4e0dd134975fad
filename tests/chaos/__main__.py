"""``python -m tests.chaos``: the chaos run of :mod:`tests.chaos.chaos`."""

import sys

from tests.chaos.chaos import main

sys.exit(main())
