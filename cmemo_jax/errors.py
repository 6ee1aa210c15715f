"""Errors meant for the user: the entry points print their one-line message (no traceback) and exit
non-zero. Anything else that escapes is a bug and keeps its traceback."""


class CmemoError(Exception):
    """Base of the user-facing errors; `str(err)` is one line naming the file/field and the fault."""


class ConfigError(CmemoError, ValueError):
    """A config field that cannot work (named in the message)."""
