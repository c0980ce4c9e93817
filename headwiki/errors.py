"""The one exception type for bad input: the CLI prints it on one line and exits 2."""

from __future__ import annotations


class HeadwikiError(Exception):
    """A user-facing problem (bad input, missing model, locked DB) with its fix in the message."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
