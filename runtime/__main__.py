"""``python -m embedrt``."""

import sys

from embedrt.cli import main

sys.exit(main())
