"""`python -m cc_client.bench`."""

import sys

from .cli import main

sys.exit(main())
