"""Shared plumbing for command-line entry points: quiet TensorFlow, one-line errors."""

import functools
import importlib
import os
import sys
import tempfile

from tfmri.errors import UserError

# TensorFlow's C++ log level when the user sets none: fatal only. Its INFO, WARNING
# and ERROR lines on CPU machines are noise for a user (the oneDNN notice, "failed
# call to cuInit", grappler's "remapper failed"); TF_CPP_MIN_LOG_LEVEL=0 brings them
# all back.
QUIET_LEVEL = "3"
_SET_HERE = "TFMRI_QUIET_TENSORFLOW"


def quiet_tensorflow(load=True):
    """Hides TensorFlow's C++ log lines unless TF_CPP_MIN_LOG_LEVEL is set.

    Call it before TensorFlow is imported. The lines TensorFlow prints while it loads
    (before its logging reads any setting) go to stderr whatever the level: with
    ``load`` TensorFlow is imported here with stderr set aside, and what it printed is
    shown only if the import fails. Entry points that do not need TensorFlow pass
    ``load=False``.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ and _SET_HERE not in os.environ:
        return  # the user asked for a level: theirs, and every line
    # Marked, so that the processes tfmri starts (the demo's steps) stay quiet too.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LEVEL
    os.environ[_SET_HERE] = "1"
    if load and "tensorflow" not in sys.modules:
        _with_stderr_aside(lambda: importlib.import_module("tensorflow"))


def _with_stderr_aside(function):
    """Runs ``function`` with file descriptor 2 in a temporary file; replays the file's
    content to stderr if ``function`` raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            return function()
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# Errors that are the user's to fix: reported in one line, no traceback. Anything
# else (a ValueError raised inside Keras or TensorFlow included) is a bug and keeps
# its traceback.
USER_ERRORS = (UserError,)


def fail(message, status=1):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def user_errors_to_exit(main):
    """Wraps an absl ``main`` so that a user error prints one line and exits non-zero;
    positional arguments are one (every option of the applications is a --flag)."""

    @functools.wraps(main)
    def wrapped(argv):
        try:
            if len(argv) > 1:
                raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
            return main(argv)
        except USER_ERRORS as error:
            fail(str(error))

    return wrapped


HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def run(main):
    """``absl.app.run(main)``, but asking for help exits 0 (absl exits 1), and log
    messages below WARNING are shown only with ``--verbosity`` (``-v``) 0 or more."""
    from absl import app, flags, logging

    @functools.wraps(main)
    def quiet_main(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        return main(argv)

    try:
        app.run(quiet_main)
    except SystemExit as exit_request:
        if exit_request.code == 1 and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
            sys.exit(0)
        raise
