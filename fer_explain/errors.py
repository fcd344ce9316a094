"""The exception type for the user's mistakes, and `run_command`, which turns it (or a file the system refused to read
or write) into one line on stderr and a non-zero exit instead of a stack trace."""


class UserError(Exception):
    """Bad input from the user (missing folder, corrupt checkpoint, unknown class, ...): no stack trace wanted."""


def run_command(command, interrupted_hint: str = "") -> int:
    """The exit code of `command()` for a command line: its return value (None -> 0), 2 with one `error: ...` line
    on stderr for a UserError, 1 with one line for an OSError (a file that could not be read or written), 130 on
    Ctrl-C (with `interrupted_hint`, e.g. how to resume)."""
    import sys

    try:
        code = command()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused (full disk, read-only mount, permissions): say which file and why
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted" + (f"; {interrupted_hint}" if interrupted_hint else ""), file=sys.stderr)
        return 130
    return 0 if code is None else code


def run_writing_command(main, args) -> int:
    """run_command for a command whose `main(args)` returns the files it wrote, each then listed as `wrote PATH`."""
    def run() -> None:
        for path in main(args):
            print(f"wrote {path}")

    return run_command(run)
