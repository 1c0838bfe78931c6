"""`python -m registry_tools` is the same as the `registry-tools` command."""

import sys

from .cli import main

sys.exit(main())
