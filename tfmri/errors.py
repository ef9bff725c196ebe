"""The base class of errors that are the user's to fix (bad file, bad flag, bad data),
and the exception a SIGTERM raises.

Entry points report them in one line and exit non-zero; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """Something about the input that the user must fix; the message says what and where."""


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler of ``tfmri.cli.run``, so that
    ``with`` and ``finally`` blocks unwind (locks released, worker pools stopped,
    temporary files removed) as they do for Ctrl-C's KeyboardInterrupt. Like that one it
    is a BaseException, so that ``except Exception`` does not stop it."""

    def __init__(self, signal_number):
        super().__init__(signal_number)
        self.signal_number = signal_number
