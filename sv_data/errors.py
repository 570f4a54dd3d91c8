"""The exception types that command-line tools turn into a one-line message and exit status 2."""


class SvkitError(Exception):
    """A problem with the user's input or environment, explained in one line (naming the file, where one is
    involved). Anything else that escapes is a bug and keeps its traceback."""


class BuildError(SvkitError):
    """A build that cannot start or finish; the message is one line for the user."""


def require_at_least(option: str, value: int | float, least: int | float) -> None:
    """The check of a numeric option: ``--option must be >= least, got value``."""
    if value < least:
        raise SvkitError(f"{option} must be >= {least}, got {value}")
