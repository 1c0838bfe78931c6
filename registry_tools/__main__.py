"""`python -m registry_tools` is the same as the `registry-tools` command."""

import sys

from registry_tools.cli import main

sys.exit(main())
