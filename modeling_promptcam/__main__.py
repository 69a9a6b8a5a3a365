"""`python -m modeling_promptcam COMMAND ...`: the `promptcam` command line (modeling_promptcam.cli)."""

import sys

from .cli import main

sys.exit(main())
