"""One exception type for mistakes a user can fix; the CLI prints its message on one line."""


class UserError(Exception):
    """Bad input or setup: the message names the problem and the fix, no traceback needed."""
