"""``python -m fastloss``: the built-in default job (see :mod:`fastloss._demo`)."""

import sys

from fastloss._demo import main

sys.exit(main())
