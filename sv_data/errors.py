"""The one exception type that command-line tools turn into a one-line message and exit status 2."""


class SvkitError(Exception):
    """A problem with the user's input or environment, explained in one line (naming the file, where one is
    involved). Anything else that escapes is a bug and keeps its traceback."""
