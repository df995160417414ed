"""``python -m linkai_provider.server``: the same as the ``linkai-server`` command."""

from linkai_provider.server.cli import main

raise SystemExit(main())
