"""`python -m bot`: the same as the `modbot` command (bot/cli/)."""

from .cli import main

raise SystemExit(main())
