"""`python -m cc_bench`."""

import sys

from .cli import main

sys.exit(main())
