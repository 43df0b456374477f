"""``python -m gradfit ...``: the same as the ``gradfit`` console script."""
import sys

from .cli import main

sys.exit(main())
