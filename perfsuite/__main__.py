"""`python -m perfsuite ...`: the `perfsuite` command, for an environment whose scripts are not on PATH."""

import sys

from perfsuite.cli import main

sys.exit(main())
