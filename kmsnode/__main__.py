"""``python -m kmsnode``: the operator CLI."""

import sys

from .cli import main

sys.exit(main())
