"""``python -m walloc_edge.cli``: the same as the ``walloc-edge`` console script."""
import sys

from . import main

sys.exit(main())
