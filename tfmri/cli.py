"""Shared plumbing for command-line entry points: quiet TensorFlow, one-line errors."""

import functools
import os
import sys

from tfmri.errors import UserError


def quiet_tensorflow():
    """Hides TensorFlow's C++ start-up chatter; call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Errors that are the user's to fix: reported in one line, no traceback.
USER_ERRORS = (UserError, ValueError, FileNotFoundError)


def fail(message, status=1):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def user_errors_to_exit(main):
    """Wraps an absl ``main`` so that a user error prints one line and exits non-zero."""

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except USER_ERRORS as error:
            fail(str(error))

    return wrapped


HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def run(main):
    """``absl.app.run(main)``, but asking for help exits 0 (absl exits 1)."""
    from absl import app

    try:
        app.run(main)
    except SystemExit as exit_request:
        if exit_request.code == 1 and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
            sys.exit(0)
        raise
