"""Errors the user can act on. The CLI prints them as one line, with no traceback."""


class VmsimError(Exception):
    """A problem with the user's input or environment, stated in one line."""

    exit_code = 2


class GuestError(VmsimError):
    """The guest died (fatal trap, unmapped access, panic). The message carries the diagnostic."""

    exit_code = 3
