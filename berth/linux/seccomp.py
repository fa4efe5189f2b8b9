"""A ctypes binding of libseccomp (2.5): build a filter, add rules, export its cBPF, and load
a program with seccomp(2).

Only the calls runtimes use. libseccomp is loaded on first use, so that importing this module
costs nothing for a container without a filter.
"""

import ctypes
import os

from ._libc import fail, libc, sysno

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000


def SCMP_ACT_ERRNO(x: int) -> int:  # noqa: N802 - the C macro's name
    return 0x00050000 | (x & 0x0000FFFF)


def SCMP_ACT_TRACE(x: int) -> int:  # noqa: N802
    return 0x7FF00000 | (x & 0x0000FFFF)


# enum scmp_compare
SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, \
    SCMP_CMP_MASKED_EQ = range(1, 8)

# enum scmp_filter_attr
SCMP_FLTATR_ACT_DEFAULT = 1
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_API_TSKIP = 5
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7
SCMP_FLTATR_CTL_OPTIMIZE = 8
SCMP_FLTATR_API_SYSRAWRC = 9

# AUDIT_ARCH_* values libseccomp uses as its architecture tokens.
ARCHES = {
    "SCMP_ARCH_X86": 0x40000003,
    "SCMP_ARCH_X86_64": 0xC000003E,
    "SCMP_ARCH_X32": 0x4000003E,
    "SCMP_ARCH_ARM": 0x40000028,
    "SCMP_ARCH_AARCH64": 0xC00000B7,
    "SCMP_ARCH_MIPS": 0x00000008,
    "SCMP_ARCH_MIPS64": 0x80000008,
    "SCMP_ARCH_MIPS64N32": 0xA0000008,
    "SCMP_ARCH_MIPSEL": 0x40000008,
    "SCMP_ARCH_MIPSEL64": 0xC0000008,
    "SCMP_ARCH_MIPSEL64N32": 0xE0000008,
    "SCMP_ARCH_PPC": 0x00000014,
    "SCMP_ARCH_PPC64": 0x80000015,
    "SCMP_ARCH_PPC64LE": 0xC0000015,
    "SCMP_ARCH_S390": 0x00000016,
    "SCMP_ARCH_S390X": 0x80000016,
    "SCMP_ARCH_RISCV64": 0xC00000F3,
}

__NR_SCMP_ERROR = -1


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_lib = None


def lib() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        try:
            L = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as e:
            raise OSError(2, "libseccomp.so.2 not found (apt-get install libseccomp2)") from e
        L.seccomp_init.argtypes = [ctypes.c_uint32]
        L.seccomp_init.restype = ctypes.c_void_p
        L.seccomp_release.argtypes = [ctypes.c_void_p]
        L.seccomp_release.restype = None
        L.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        L.seccomp_arch_add.restype = ctypes.c_int
        L.seccomp_arch_native.argtypes = []
        L.seccomp_arch_native.restype = ctypes.c_uint32
        L.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        L.seccomp_syscall_resolve_name.restype = ctypes.c_int
        L.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                             ctypes.c_uint, ctypes.POINTER(ScmpArgCmp)]
        L.seccomp_rule_add_array.restype = ctypes.c_int
        L.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        L.seccomp_attr_set.restype = ctypes.c_int
        L.seccomp_load.argtypes = [ctypes.c_void_p]
        L.seccomp_load.restype = ctypes.c_int
        L.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        L.seccomp_export_bpf.restype = ctypes.c_int
        L.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
        L.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
        _lib = L
    return _lib


def _check(r: int, what: str) -> int:
    # libseccomp returns -errno rather than setting errno.
    if r < 0:
        import os

        raise OSError(-r, f"{what}: {os.strerror(-r)}")
    return r


class Filter:
    """One libseccomp filter context; ``load()`` installs it on the calling thread."""

    def __init__(self, default_action: int) -> None:
        self.ctx = lib().seccomp_init(default_action)
        if not self.ctx:
            raise OSError(22, "seccomp_init: invalid default action")

    def add_arch(self, token: int) -> None:
        r = lib().seccomp_arch_add(self.ctx, token)
        if r == -17:  # EEXIST: the native arch is in every new filter
            return
        _check(r, "seccomp_arch_add")

    def set_attr(self, attr: int, value: int) -> None:
        _check(lib().seccomp_attr_set(self.ctx, attr, value), "seccomp_attr_set")

    def add_rule(self, action: int, syscall: int,
                 conds: list[tuple[int, int, int, int]] = ()) -> None:
        arr = (ScmpArgCmp * max(1, len(conds)))()
        for i, (arg, op, a, b) in enumerate(conds):
            arr[i].arg, arr[i].op, arr[i].datum_a, arr[i].datum_b = arg, op, a, b
        _check(lib().seccomp_rule_add_array(self.ctx, action, syscall, len(conds), arr),
               f"seccomp_rule_add syscall {syscall}")

    def load(self) -> None:
        _check(lib().seccomp_load(self.ctx), "seccomp_load")

    def export_bpf(self) -> bytes:
        """The filter as the kernel's struct sock_filter array (libseccomp writes it to an
        fd: a memfd here, which needs no path)."""
        fd = os.memfd_create("berth-seccomp", os.MFD_CLOEXEC)
        try:
            _check(lib().seccomp_export_bpf(self.ctx, fd), "seccomp_export_bpf")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.ctx:
            lib().seccomp_release(self.ctx)
            self.ctx = None


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


def version() -> str:
    """libseccomp's version, ``major.minor.micro``."""
    L = lib()
    L.seccomp_version.argtypes = []
    L.seccomp_version.restype = ctypes.POINTER(_Version)
    v = L.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def resolve(name: str) -> int:
    """The syscall number for the native arch, or -1 if libseccomp does not know ``name``."""
    return lib().seccomp_syscall_resolve_name(name.encode())


def resolve_arch(name: str, arch: int) -> int:
    """The syscall number of ``name`` on libseccomp arch token ``arch`` (x32 numbers carry
    the x32 bit), or -1 if unknown there."""
    return lib().seccomp_syscall_resolve_name_arch(arch, name.encode())


def native_arch() -> int:
    return lib().seccomp_arch_native()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_program(program: bytes, flags: int = 0) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, program) for the calling thread. The caller
    has set no_new_privs or holds CAP_SYS_ADMIN."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.syscall(sysno("seccomp"), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                    ctypes.c_uint(flags), ctypes.byref(prog)) != 0:
        raise fail("seccomp")
