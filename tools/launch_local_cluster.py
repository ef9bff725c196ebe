"""Runs N training workers on this machine as one tf.distribute cluster.

  python tools/launch_local_cluster.py --num_workers=2 -- \\
      --flagfile=configs/demo.cfg --strategy=multi_worker --model_dir=runs/demo/pix2pix_2w

Starts ``python -m tfmri.train <args after -->`` N times, each with a ``TF_CONFIG``
naming all N workers on 127.0.0.1 (free ports picked at start) and its own index;
worker 0 is the chief. Their output is streamed line by line, prefixed with
``[worker I]``. When a worker fails, the others are stopped and the launcher exits
with the failing worker's status (128 + signal number for a worker killed by a
signal); when all finish, it exits 0. Ctrl-C stops them all.

On several machines, start ``python -m tfmri.train ... --strategy=multi_worker`` on
each host with a ``TF_CONFIG`` of its own instead (README, "Scale-out").
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import flags

from tfmri import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_workers", 2, "Worker processes to start.", lower_bound=1)
flags.DEFINE_string("module", "tfmri.train", "The Python module each worker runs.")
flags.DEFINE_float(
    "grace_seconds", 5.0, "After a failure, how long the others get to stop before SIGKILL."
)


def free_ports(count):
    """``count`` distinct TCP ports free on 127.0.0.1 (bound once, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(addresses, index):
    """The TF_CONFIG of worker ``index`` of a cluster of workers only (0 is the chief)."""
    return json.dumps(
        {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
    )


def _die_with_parent():
    """In a worker, before exec: get SIGKILL when the launcher dies (Linux), so that a
    launcher killed from outside leaves no worker blocked in a collective."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stream(index, process, lock, errors):
    """Copies a worker's output, prefixed; keeps its one-line ``error: ...`` message."""
    for line in process.stdout:
        if line.startswith("error: "):
            errors[index] = line.strip()
        with lock:
            sys.stdout.write(f"[worker {index}] {line}")
            sys.stdout.flush()


def exit_status(returncode):
    """A shell's exit status for a child's return code (negative: killed by a signal)."""
    return 128 - returncode if returncode < 0 else returncode


def describe(returncode):
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


def stop(processes, grace_seconds):
    """SIGTERM, then SIGKILL after ``grace_seconds`` (a worker blocked in a collective
    with a dead peer does not stop on SIGTERM)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        remaining = max(deadline - time.monotonic(), 0)
        try:
            process.wait(remaining)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def launch(num_workers, module, args, grace_seconds=5.0):
    """Runs the cluster; returns the exit status (0, or the first failing worker's)."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(num_workers)]
    lock = threading.Lock()
    processes, threads, errors = [], [], {}
    for index in range(num_workers):
        env = dict(os.environ, TF_CONFIG=tf_config(addresses, index), PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        processes.append(process)
        print(f"[launcher] worker {index} at {addresses[index]}, pid {process.pid}", flush=True)
        thread = threading.Thread(target=_stream, args=(index, process, lock, errors), daemon=True)
        thread.start()
        threads.append(thread)
    status, failed_worker = 0, None
    # `kill <launcher>` stops the cluster as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            codes = [process.poll() for process in processes]
            failed = [(i, code) for i, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                index, code = failed[0]
                print(
                    f"[launcher] worker {index} {describe(code)}; stopping the other workers",
                    flush=True,
                )
                stop(processes, grace_seconds)
                status, failed_worker = exit_status(code), index
                break
            if all(code == 0 for code in codes):
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("[launcher] interrupted; stopping the workers", flush=True)
        stop(processes, grace_seconds)
        status = 130
    for thread in threads:
        thread.join(timeout=5)
    if status and errors.get(failed_worker):
        # The worker refused its input in one line (a flag, a file): rerunning as is
        # would fail the same way.
        message = errors[failed_worker].removeprefix("error: ")
        print(f"error: worker {failed_worker}: {message}", file=sys.stderr)
    elif status:
        print(
            f"error: the cluster stopped (exit {status}); rerun the same command to resume "
            "from the last checkpoint",
            file=sys.stderr,
        )
    else:
        print(f"[launcher] all {num_workers} workers finished", flush=True)
    return status


def main(argv):
    args = argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    sys.exit(launch(FLAGS.num_workers, FLAGS.module, args, FLAGS.grace_seconds))


if __name__ == "__main__":
    cli.run(main)
