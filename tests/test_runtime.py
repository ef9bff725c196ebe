"""Process set-up of tfmri.runtime: memory reuse between steps."""

import platform
import subprocess
import sys

import pytest

# A process of its own that loads TensorFlow (tfmri.runtime imports it), and another.
pytestmark = pytest.mark.slow

# Allocates, touches and frees a 64 MiB block ten times, as a training step does with
# its large tensors, and prints the minor page faults this caused.
_FAULTS = """
import ctypes, resource, sys
if sys.argv[1] == "keep":
    from tfmri import runtime
    assert runtime.keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode):
    output = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(output.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc setting")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    default, kept = _faults("default"), _faults("keep")
    pages = (64 << 20) // 4096
    # By default every block is a fresh mapping: ten blocks' worth of faults (fewer
    # with transparent huge pages); kept, only the first block faults.
    assert default >= 5 * kept
    assert kept <= 2 * pages
