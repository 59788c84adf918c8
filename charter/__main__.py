"""``python -m charter`` runs the CLI."""

import sys

from charter.cli import main

sys.exit(main())
