"""libnftables (the library behind the `nft` command), loaded through ctypes.

One context per process, used under a lock: libnftables contexts are not thread-safe. A command
buffer is one nftables transaction — the kernel applies all of it or none of it. No policy here:
callers build the ruleset.
"""

import ctypes
import threading

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4


class _Lib:
    def __init__(self) -> None:
        lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        self.lib = lib
        self.ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not self.ctx:
            raise OSError(ctypes.get_errno(), "nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)
        self.lock = threading.Lock()


_lib: _Lib | None = None
_init_lock = threading.Lock()


def _get() -> _Lib:
    global _lib
    if _lib is None:
        with _init_lock:
            if _lib is None:
                _lib = _Lib()
    return _lib


def run(commands: str, *, json_output: bool = False) -> str:
    """Run an nft command buffer as one transaction; its output, or OSError with nft's message."""
    lib = _get()
    with lib.lock:
        lib.lib.nft_ctx_output_set_flags(lib.ctx, NFT_CTX_OUTPUT_JSON if json_output else 0)
        rc = lib.lib.nft_run_cmd_from_buffer(lib.ctx, commands.encode())
        out = (lib.lib.nft_ctx_get_output_buffer(lib.ctx) or b"").decode()
        err = (lib.lib.nft_ctx_get_error_buffer(lib.ctx) or b"").decode()
    if rc != 0:
        # nft's message is "<where>: Error: <what>" then the offending line and a caret line.
        lines = [ln for ln in err.splitlines() if ln.strip()]
        msg = lines[0].split("Error: ", 1)[-1] if lines else "failed"
        if len(lines) > 1:
            msg += f" (in: {lines[1].strip()})"
        raise OSError(22, f"nft: {msg}")
    return out


def run_fresh(commands: str) -> None:
    """Run ``commands`` in a context of its own, made and freed here: libnftables opens its
    netlink socket when a context is made, so this one acts on the calling thread's network
    namespace (after a setns), where the shared context acts on the one it was made in."""
    lib = _get()
    ctx = lib.lib.nft_ctx_new(NFT_CTX_DEFAULT)
    if not ctx:
        raise OSError(ctypes.get_errno(), "nft_ctx_new failed")
    try:
        lib.lib.nft_ctx_buffer_output(ctx)
        lib.lib.nft_ctx_buffer_error(ctx)
        rc = lib.lib.nft_run_cmd_from_buffer(ctx, commands.encode())
        err = (lib.lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
    finally:
        lib.lib.nft_ctx_free(ctx)
    if rc != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        raise OSError(22, "nft: " + (lines[0].split("Error: ", 1)[-1] if lines else "failed"))
