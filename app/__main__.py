"""`python -m app [serve | status | tenant list | tenant keys REF | tenant create NAME | mcp]` (app/cli)."""

from __future__ import annotations

import sys

from app.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
