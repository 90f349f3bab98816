"""``python -m fastloss``: the built-in default job (see :mod:`fastloss._demo`);
``python -m fastloss cache [--clear]``: the kernel cache (see :mod:`fastloss._cache_command`)."""

import sys

if sys.argv[1:2] == ["cache"]:
    from fastloss._cache_command import main

    sys.exit(main(sys.argv[2:]))

from fastloss._demo import main

sys.exit(main())
