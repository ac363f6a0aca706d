"""The lifetime wrapper (`tools.lifetime.tethered`): `python -I -S pdeathsig.py PARENT_PID
COMMAND ARGS...` asks the kernel to SIGKILL this process when its parent thread ends
(PR_SET_PDEATHSIG, kept across exec), then execs COMMAND. It runs before every process we
start, so it imports only what it needs (ctypes, os, sys)."""

import ctypes
import os
import sys

PR_SET_PDEATHSIG = 1
SIGKILL = 9


def main() -> None:
    """Set the signal, check the parent is still the one that asked, exec the command."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != int(sys.argv[1]):
        os._exit(1)  # the parent died before the signal was set: nobody wants this child
    os.execvp(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
