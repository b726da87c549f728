"""``python -m d2lconv``: the same as the ``d2lconv`` command."""

import sys

from d2lconv.cli import main

sys.exit(main())
