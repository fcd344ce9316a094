"""The one exception type that the command line turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user (missing folder, corrupt checkpoint, unknown class, ...): no stack trace wanted."""
