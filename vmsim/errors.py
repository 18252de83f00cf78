"""Errors the user can act on. The CLI prints them as one line, with no traceback.

`check_text` turns text that cannot be encoded (argv bytes that were not UTF-8) into one.
"""


class VmsimError(Exception):
    """A problem with the user's input or environment, stated in one line."""

    exit_code = 2


class GuestError(VmsimError):
    """The guest died (fatal trap, unmapped access, panic). The message carries the diagnostic."""

    exit_code = 3


class ConsoleOutputError(VmsimError):
    """Standard output stopped taking what vmsim writes (a full disk, a terminal that
    went away): a run ends rather than go on losing the guest's console output."""

    exit_code = 1


def text_problem(text: str) -> str | None:
    """Why `text` cannot be written out as UTF-8 ('byte 0xff at character 14'), or None.
    Bytes of argv that are not UTF-8 reach Python as lone surrogates, which fail only
    later, deep inside whatever encodes them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        bad = (f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF  # an argv byte
               else f"U+{code:04X}")
        return f"{bad} at character {error.start}"
    return None


def check_text(text: str, what: str) -> str:
    """`text`, if it can be written out as UTF-8; else a VmsimError naming `what`."""
    problem = text_problem(text)
    if problem is not None:
        raise VmsimError(f"{what} is not valid UTF-8 text ({problem})")
    return text
