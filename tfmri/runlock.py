"""One run per directory at a time: a lock file that names its holder.

Training (``--model_dir``), conversion (``--output_dir``), export (the model's
directory under ``--export_dir``) and batch reconstruction (``--output_dir``) hold
``<directory>/.tfmri.lock`` while they run. The file holds the owner's pid, host,
process start time and command. A second run into a held directory stops with one
line naming the holder. A lock whose owner is gone (same host, and no process with
that pid and start time) is stale: the next run takes it over. A lock held from
another host cannot be checked from here; the message says which file to delete
once that run is known to be gone.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys

from tfmri import fileio
from tfmri.errors import UserError

LOCK_NAME = ".tfmri.lock"


class DirectoryInUse(UserError):
    """Another run holds the directory."""


def _start_time(pid):
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # The command name (field 2) may hold spaces: split after its closing ')'.
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid, start_time):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    # A recycled pid belongs to a process started at another time.
    return start_time is None or _start_time(pid) in (None, start_time)


def _owner(purpose):
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start_time": _start_time(os.getpid()),
        "purpose": purpose,
        "command": " ".join(sys.argv),
        "since": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _read(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _is_stale(owner):
    if owner.get("host") != socket.gethostname():
        return False
    try:
        return not _alive(int(owner["pid"]), owner.get("start_time"))
    except (KeyError, TypeError, ValueError):
        return True  # not a lock tfmri wrote completely


def _describe(owner):
    return (
        f"{owner.get('purpose', 'a run')} (pid {owner.get('pid')} on {owner.get('host')}, "
        f"since {owner.get('since')})"
    )


@contextlib.contextmanager
def hold(directory, purpose, flag):
    """Holds ``directory``'s lock for the block (creating the directory).

    Args:
      directory: the run's directory.
      purpose: what holds it, for the message a second run prints ("training", ...).
      flag: the flag that named the directory (``--model_dir``), for the messages.

    Raises:
      DirectoryInUse: a live run holds the directory (or a run on another host).
    """
    fileio.make_directory(directory, flag)
    path = os.path.join(directory, LOCK_NAME)
    me = _owner(purpose)
    # The check and the take happen under an flock of the directory, so that two runs
    # that both find a stale lock do not both take it.
    guard = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        owner = _read(path)
        if owner is not None and not _is_stale(owner):
            if owner.get("host") == me["host"]:
                fix = f"wait for it to finish or stop it, or use another {flag}"
            else:
                fix = f"wait for it, or use another {flag}; if that run is gone, delete {path}"
            raise DirectoryInUse(f"{flag}={directory}: in use by {_describe(owner)}; {fix}")
        if owner is not None:
            print(f"{flag}={directory}: taking over the stale lock of {_describe(owner)}")
        fileio.write_json(path, me)
    finally:
        fcntl.flock(guard, fcntl.LOCK_UN)
        os.close(guard)
    try:
        yield path
    finally:
        current = _read(path)
        if current is not None and current.get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
