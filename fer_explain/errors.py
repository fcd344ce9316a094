"""The one exception type that the command line turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user (missing folder, corrupt checkpoint, unknown class, ...): no stack trace wanted."""


def run_command(command, interrupted_hint: str = "") -> int:
    """The exit code of `command()` for a command line: its return value (None -> 0), 2 with one `error: ...` line
    on stderr for a UserError, 130 on Ctrl-C (with `interrupted_hint`, e.g. how to resume)."""
    import sys

    try:
        code = command()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted" + (f"; {interrupted_hint}" if interrupted_hint else ""), file=sys.stderr)
        return 130
    return 0 if code is None else code
