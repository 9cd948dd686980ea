"""Errors that end a command with a one-line message and a contract exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_PARTIAL = 4
EXIT_TIMEOUT = 5


class NbtuiError(Exception):
    """A failure the user can act on; ``str()`` is the message shown."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(NbtuiError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A config file is wrong; the message names file, line and key."""


class NotFound(NbtuiError):
    exit_code = EXIT_NOT_FOUND


class TimedOut(NbtuiError):
    exit_code = EXIT_TIMEOUT
