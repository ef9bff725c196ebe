"""Atomic file writes: outputs appear under their final name only once complete.

A run killed mid-write leaves at most a hidden ``.NAME.tmp-PID`` file behind, never a
half-written file that looks finished.
"""

import contextlib
import json
import os

from tfmri.errors import UserError


def temporary_name(path):
    """The hidden sibling name that ``path`` is written under until it is complete."""
    directory, base = os.path.split(os.fspath(path))
    return os.path.join(directory, f".{base}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; renames it to ``path`` when the block succeeds."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path, text):
    """Writes ``text`` to ``path``, atomically."""
    with atomic_path(path) as temporary, open(temporary, "w") as handle:
        handle.write(text)


def write_json(path, value):
    """Writes ``value`` as indented JSON, atomically; refuses NaN and infinities (which
    are not JSON, and would be a silently wrong result) with a UserError naming ``path``."""
    try:
        text = json.dumps(value, indent=2, sort_keys=True, allow_nan=False)
    except ValueError as error:
        raise UserError(f"{path}: not written, a value is not finite ({error})") from None
    write_text(path, text + "\n")


def check_directory_path(path, flag):
    """Raises a one-line UserError when a file stands where directory ``path`` (or one of
    its parents) would be; ``flag`` names the option that gave the path. Creates nothing."""
    path = os.fspath(path)
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "it" if existing == os.path.abspath(path) else existing
        raise UserError(f"{flag}={path}: {where} is a file, not a directory; give a directory path")


def make_directory(path, flag):
    """Creates directory ``path`` and its parents, after :func:`check_directory_path`."""
    check_directory_path(path, flag)
    os.makedirs(path, exist_ok=True)
    return path
