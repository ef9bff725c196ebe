"""Shared plumbing for command-line entry points: quiet TensorFlow, one-line errors,
and an orderly stop on SIGINT and SIGTERM."""

import contextlib
import errno
import functools
import importlib
import os
import re
import signal
import stat
import sys
import tempfile

from tfmri.errors import Terminated, UserError

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
    if _is_application():
        # Until run() installs its handlers (TensorFlow takes seconds to load) nothing
        # is held that needs unwinding: a signal prints its line and exits at once.
        _handle_signals(_exit_at_once)
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
    global _stderr_fd
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        _stderr_fd = saved
        try:
            return function()
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            _stderr_fd = 2
            os.dup2(saved, 2)
            os.close(saved)


# Where a signal's line goes: file descriptor 2, or the real stderr while
# _with_stderr_aside has put fd 2 in a temporary file.
_stderr_fd = 2
# The exit status of a process stopped by a signal, as a shell reports it (128 + N).
SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _is_application():
    """Whether this process runs a tfmri application (``python -m tfmri.<app>``), not a
    program (a test, a notebook) that imports one."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name.startswith("tfmri.")


def _handle_signals(handler):
    for number in SIGNALS:
        signal.signal(number, handler)


def interrupted_line(signal_number):
    name = signal.Signals(signal_number).name
    return f"interrupted ({name}): rerun the same command to resume"


def _exit_at_once(signal_number, frame):
    """A signal before anything is held, or a second one while the first unwinds."""
    fresh_line = "\n" if os.isatty(_stderr_fd) else ""
    os.write(_stderr_fd, f"{fresh_line}{interrupted_line(signal_number)}\n".encode())
    os._exit(SIGNALS[signal_number])


def _unwind(signal_number, frame):
    """The first SIGINT or SIGTERM: an exception in the main thread, so that locks,
    worker pools and temporary files are released on the way out (run() reports it)."""
    _handle_signals(_exit_at_once)
    if signal_number == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signal_number)


def _report_interrupt(signal_number):
    if sys.stderr.isatty():
        sys.stderr.write("\n")  # after the ^C the terminal echoed, or a progress bar
    print(interrupted_line(signal_number), file=sys.stderr)
    sys.exit(SIGNALS[signal_number])


# Errors that are the user's to fix: reported in one line, no traceback. Anything
# else (a ValueError raised inside Keras or TensorFlow included) is a bug and keeps
# its traceback, except the storage errors of STORAGE_ERRNOS.
USER_ERRORS = (UserError,)

_NO_ROOM = "free space, or write to another directory, and rerun"
_NO_RIGHT = "check the permissions, or write to another directory"
# Errors of the machine a run writes to, each with what to do: reported in one line.
# ENOENT is not among them: a missing file that tfmri did not check first is a bug.
STORAGE_ERRNOS = {
    errno.ENOSPC: _NO_ROOM,
    errno.EDQUOT: _NO_ROOM,
    errno.EFBIG: "the file system takes no file this large; write to another one",
    errno.EROFS: "the file system is read-only; write to another directory",
    errno.EACCES: _NO_RIGHT,
    errno.EPERM: _NO_RIGHT,
    errno.EIO: "the device reported an I/O error; check the disk, then rerun",
}


def _storage_errno(error):
    """The STORAGE_ERRNOS number of an OSError, an h5py OSError (its errno in the
    message) or a TensorFlow OpError (its strerror in the message), else None."""
    if isinstance(error, OSError):
        number = error.errno
        if number is None:
            found = re.search(r"errno = (\d+)", str(error))
            number = int(found.group(1)) if found else None
        return number if number in STORAGE_ERRNOS else None
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None and isinstance(error, tensorflow.errors.OpError):
        for number in STORAGE_ERRNOS:
            if os.strerror(number) in error.message:
                return number
    return None


def storage_error_line(error):
    """``PATH: cause (ENOSPC); what to do`` for a full or read-only disk, a quota, missing
    permissions or an I/O error; None for any other error (which keeps its traceback)."""
    number = _storage_errno(error)
    if number is None:
        return None
    cause = f"({errno.errorcode[number]}); {STORAGE_ERRNOS[number]}"
    if isinstance(error, OSError) and error.errno == number and error.filename is not None:
        return f"{error.filename}: {error.strerror} {cause}"
    if isinstance(error, OSError) and error.errno == number:
        return f"{error.strerror} {cause}"  # a write to an open file names none
    message = error.message if hasattr(error, "message") else str(error)
    # TensorFlow's "{{function_node ...}} PATH; cause [Op:SaveV2]": the path and cause.
    message = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", message.strip().splitlines()[0])
    return f"{message.strip()} {cause}"


def fail(message, status=1):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


@contextlib.contextmanager
def one_line_errors():
    """A user error, or a storage error (:func:`storage_error_line`), raised in the block
    ends the process with one ``error:`` line and exit 1; anything else propagates."""
    try:
        yield
    except USER_ERRORS as error:
        fail(str(error))
    except Exception as error:
        line = storage_error_line(error)
        if line is None:
            raise
        fail(line)


def user_errors_to_exit(main):
    """Wraps an absl ``main`` so that a user error prints one line and exits non-zero;
    positional arguments are one (every option of the applications is a --flag)."""

    @functools.wraps(main)
    def wrapped(argv):
        with one_line_errors():
            if len(argv) > 1:
                raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
            return main(argv)

    return wrapped


HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")
FLAGFILE_BYTES = 1 << 20  # --name=value lines: a bigger file is not a flagfile


def check_flagfiles(args):
    """UserError naming the file unless each ``--flagfile`` of ``args``, and each one
    those files name, is a regular UTF-8 text file of at most FLAGFILE_BYTES: absl
    would read ``/dev/zero`` forever and end with a traceback on a binary file."""
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            break  # absl reads no flag after it
        if arg in ("--flagfile", "-flagfile") and rest:
            _check_flagfile(os.path.expanduser(rest.pop(0)), [])
        elif arg.startswith(("--flagfile=", "-flagfile=")):
            _check_flagfile(os.path.expanduser(arg.split("=", 1)[1].strip()), [])


def _check_flagfile(path, including):
    """``including``: the flagfiles that name ``path``, outermost first."""
    if not path or path in including:
        return  # absl ignores an empty name, and warns about a cycle
    where = f"--flagfile={path}" + "".join(f" (named in {outer})" for outer in including[::-1])
    what = "a flagfile is --name=value lines"
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            raise UserError(f"{where}: not a regular file; {what}")
        with open(path, "rb") as handle:
            data = handle.read(FLAGFILE_BYTES + 1)
    except OSError as error:
        raise UserError(f"{where}: {error.strerror}") from None
    if len(data) > FLAGFILE_BYTES:
        raise UserError(f"{where}: over {FLAGFILE_BYTES} bytes; {what}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{where}: not UTF-8 text (byte {error.start}); {what}") from None
    if "\0" in text:
        raise UserError(f"{where}: not text (a NUL byte at {text.index(chr(0))}); {what}")
    for line in text.splitlines():
        # absl's test: a line that starts with the directive, no space before it.
        if line.startswith(("--flagfile=", "-flagfile=")):
            nested = os.path.expanduser(line.split("=", 1)[1].strip())
            _check_flagfile(nested, including + [path])


def run(main):
    """``absl.app.run(main)``, but asking for help exits 0 (absl exits 1), log
    messages below WARNING are shown only with ``--verbosity`` (``-v``) 0 or more,
    flagfiles are checked first (:func:`check_flagfiles`), a full or read-only disk is
    one line (:func:`storage_error_line`), and SIGINT or SIGTERM unwinds the run (locks
    released, worker processes stopped) and ends it with one line and the shell's
    status for the signal (130, 143)."""
    from absl import app, flags, logging

    @functools.wraps(main)
    def quiet_main(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        return main(argv)

    _handle_signals(_unwind)
    try:
        with one_line_errors():
            check_flagfiles(sys.argv[1:])
            app.run(quiet_main)
    except SystemExit as exit_request:
        if exit_request.code == 1 and any(arg in HELP_FLAGS for arg in sys.argv[1:]):
            sys.exit(0)
        raise
    except KeyboardInterrupt:
        _report_interrupt(signal.SIGINT)
    except Terminated as terminated:
        _report_interrupt(terminated.signal_number)
