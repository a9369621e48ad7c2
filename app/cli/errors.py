"""The one error the command line reports: a single line on stderr and a non-zero exit."""

from __future__ import annotations


class CliError(Exception):
    """What went wrong and what to set or free, in one line; never a traceback."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
