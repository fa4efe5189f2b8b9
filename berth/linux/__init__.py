"""The thin syscall seam: every call into libc that the stdlib ``os`` module lacks.

One module per concern (``mount``, ``ns``, ...), all sharing the libc handle in ``_libc``.
Functions here hold no policy: they take exactly the kernel's arguments, return what the kernel
returns, and raise ``OSError(errno, "call: strerror", path)`` on failure. Callers in
``runtime``, ``image``, ``network`` and ``shim`` decide what to do; tests may substitute a
recording fake with the same function names.

Import cost matters (the runtime's init imports this): only ``ctypes`` and ``os``.
"""
