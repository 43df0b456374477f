"""``python -m gradfit.cli ...``: the same as the ``gradfit`` console script."""
import sys

from . import main

sys.exit(main())
