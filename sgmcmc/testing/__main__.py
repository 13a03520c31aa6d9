"""``python -m sgmcmc.testing``: see :func:`sgmcmc.testing.cli.main`."""

from . import main

raise SystemExit(main())
