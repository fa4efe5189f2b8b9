"""prctl(2) for the hot paths, through ``_ctypes`` alone (``berth.linux.prctl`` is the full one).

The shim needs two prctls (PR_SET_CHILD_SUBREAPER, PR_SET_NAME) on every start; ``import
ctypes`` costs ~5 ms there, its C core ``_ctypes`` ~1 ms. This module therefore calls libc's
``prctl`` by address with integer and bytes arguments only, and keeps out of ``_libc`` (which
loads all of ctypes).
``_ctypes.call_function`` does not capture errno, so a failure raises OSError(EINVAL) naming
the option: every option used here fails only for a bad argument.
"""

import _ctypes

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

_prctl = _ctypes.dlsym(_ctypes.dlopen(None, 2), "prctl")  # RTLD_NOW on the main program


def prctl(option: int, arg2: int | bytes = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    r = _ctypes.call_function(_prctl, (option, arg2, arg3, arg4, arg5))
    if r == -1:
        raise OSError(22, f"prctl {option}: invalid argument")
    return r


def set_child_subreaper(on: bool = True) -> None:
    """Become the parent of orphaned descendants (the container's init after runc exits)."""
    prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0)


def set_name(name: bytes) -> None:
    """The thread's comm (as ps and /proc/PID/stat show it), at most 15 bytes."""
    prctl(PR_SET_NAME, name[:15] + b"\0")  # ctypes passes bytes as a char pointer


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)
