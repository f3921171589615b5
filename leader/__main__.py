"""`python -m leader ...` (also what `accelerate launch -m leader teach ...` runs)."""

import sys

from leader.cli import main

sys.exit(main())
