"""The base class of errors that are the user's to fix (bad file, bad flag, bad data).

Entry points report them in one line and exit non-zero; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """Something about the input that the user must fix; the message says what and where."""
