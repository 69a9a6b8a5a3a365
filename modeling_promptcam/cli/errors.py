"""The one error path of every `promptcam` command: exit codes and the `error: ...` line.

Exit codes: 0 success; 1 the work failed for a known reason (a bad checkpoint, an unreadable file, a missing optional
dependency), reported as `error: <message>` on stderr with no traceback; 2 bad command-line usage (argparse, or a
[`UsageError`] a command raises for a combination argparse cannot check). Any other exception is a bug: it is reported
as one `error: unexpected ...` line saying where to report it, exit 1; with the environment variable
`PROMPTCAM_DEBUG=1` the exception is raised on after that line, so Python prints its traceback (docs/cli.md, "Errors").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

# The failures a command reports instead of a traceback. The package's own error classes (DataError, MaskError,
# NotAnOfficialCheckpointError, NotAnOpenClipCheckpointError, ImgFocusLayoutError, InputError) are ValueErrors;
# FileNotFoundError and FileExistsError are OSErrors; a missing extra is an ImportError naming what to install.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError)


# set to 1 to see the traceback of an unexpected failure
DEBUG_VARIABLE = "PROMPTCAM_DEBUG"
REPORT_TO = "the modeling-promptcam issue tracker"


class UsageError(Exception):
    """A command line that parses but cannot run, such as a flag that one choice of another argument needs (exit 2)."""


def report_error(message: object) -> None:
    """The line every command prints for a failure: `error: <message>` on stderr."""
    print(f"error: {message}", file=sys.stderr)


def run_command(run: Callable[..., int], *options) -> int:
    """`run(*options)`'s exit code, or 1 after `error: ...` for a known failure, or 2 for a [`UsageError`]."""
    try:
        return run(*options)
    except UsageError as error:
        report_error(error)
        return 2
    except KNOWN_ERRORS as error:
        report_error(error)
        return 1
    except Exception as error:  # a bug: one line that says so and where to report it, the traceback on request
        report_error(
            f"unexpected {type(error).__name__}: {error}. This is a bug in modeling-promptcam; please report it to "
            f"{REPORT_TO} with the command line and the traceback ({DEBUG_VARIABLE}=1 prints it)."
        )
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise  # Python prints the traceback and exits with 1
        return 1


__all__ = ["DEBUG_VARIABLE", "KNOWN_ERRORS", "UsageError", "report_error", "run_command"]
