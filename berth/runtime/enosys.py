"""The -ENOSYS stub put in front of a container's seccomp filter, as runc does.

A profile lists the syscalls it knows. A syscall newer than every one of them (clone3,
faccessat2 in an old profile) would get the profile's default action, usually EPERM, and libc
takes EPERM as final where ENOSYS makes it fall back to the older call. So, for each
architecture of the filter, a syscall number above the largest one the profile names returns
ENOSYS; everything else goes on to the filter libseccomp built. Only for a default action that
refuses (an allowing default needs no stub).

The stub is classic BPF over struct seccomp_data (nr at offset 0, arch at 4). Every
conditional jump is local (0 or 1, or to the next arch test) and every far target is reached
through a `ja`, whose offset is 32 bits: no jump can overflow the 8-bit jt/jf fields, however
many architectures there are.

    ld [4]; jeq ARCH_1 ? +0 : +1; ja SECTION_1; ...; ja FILTER
    SECTION (one arch):      ld [0]; jgt MAX ? +0 : +1; ja ENOSYS; ja FILTER
    SECTION (x86_64 alone):  ld [0]; jset X32_BIT ? +2 : +0; (then as one arch)
    SECTION (x86_64 + x32):  ld [0]; jset X32_BIT ? +3 : +0;
                             jgt MAX64 ? +0 : +1; ja ENOSYS; ja FILTER;
                             jgt MAX32 ? +0 : +1; ja ENOSYS; ja FILTER
    ENOSYS: ret ERRNO(ENOSYS)
    FILTER: (libseccomp's program)

Pure logic: the caller (berth.runtime.init) resolves the numbers through libseccomp.
"""

import struct

AUDIT_ARCH_X86_64 = 0xC000003E
SCMP_ARCH_X86_64 = 0xC000003E
SCMP_ARCH_X32 = 0x4000003E
X32_SYSCALL_BIT = 0x40000000
ENOSYS = 38
RET_ERRNO_ENOSYS = 0x00050000 | ENOSYS

_LD_W_ABS = 0x20
_JA = 0x05
_JEQ_K = 0x15
_JGT_K = 0x25
_JSET_K = 0x45
_RET_K = 0x06

# Actions under which a call the profile does not know goes through anyway.
ALLOWING = {"SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"}


def native_of(token: int) -> int:
    """The AUDIT_ARCH_* value the kernel reports for libseccomp arch ``token``: the same
    number, except x32, whose calls arrive as x86_64 with the x32 bit in the number."""
    return AUDIT_ARCH_X86_64 if token == SCMP_ARCH_X32 else token


def needed(seccomp: dict) -> bool:
    if seccomp.get("defaultAction") in ALLOWING:
        return False
    # a default of ERRNO(ENOSYS) already says ENOSYS
    return not (seccomp.get("defaultAction") == "SCMP_ACT_ERRNO" and
                seccomp.get("defaultErrnoRet") == ENOSYS)


def largest(names: list[str], tokens: list[int], resolve) -> dict[int, dict[int, int]]:
    """{audit arch: {arch token: largest syscall number the profile names}} for each arch in
    ``tokens``; ``resolve(name, token)`` is -1 for a name unknown on that arch."""
    out: dict[int, dict[int, int]] = {}
    for tok in tokens:
        top = max((n for n in (resolve(name, tok) for name in names) if n >= 0), default=-1)
        if top > 0:
            out.setdefault(native_of(tok), {})[tok] = top
    return out


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def stub(maxima: dict[int, dict[int, int]]) -> bytes:
    """The stub for ``maxima`` (from ``largest``), ending where the filter begins."""
    # Lay out: dispatch, sections, ENOSYS. Positions are instruction indexes; a `ja` at i
    # reaching t has k = t - i - 1. The filter starts right after the ENOSYS return.
    arches = sorted(maxima)
    dispatch_len = 1 + 2 * len(arches) + 1
    sections = []
    for a in arches:
        toks = maxima[a]
        if a == AUDIT_ARCH_X86_64 and len(toks) == 2:
            sections.append(("both", toks[SCMP_ARCH_X86_64], toks[SCMP_ARCH_X32]))
        elif a == AUDIT_ARCH_X86_64 and SCMP_ARCH_X32 in toks:
            sections.append(("x32", toks[SCMP_ARCH_X32], 0))
        elif a == AUDIT_ARCH_X86_64:
            sections.append(("amd64", toks[SCMP_ARCH_X86_64], 0))
        else:
            sections.append(("one", next(iter(toks.values())), 0))
    sizes = {"one": 4, "amd64": 5, "x32": 5, "both": 8}
    starts, pos = [], dispatch_len
    for kind, _m, _n in sections:
        starts.append(pos)
        pos += sizes[kind]
    enosys = pos
    filt = enosys + 1

    out = []

    def ja(target: int) -> None:
        out.append(_insn(_JA, 0, 0, target - len(out) - 1))

    def check(top: int) -> None:
        out.append(_insn(_JGT_K, 0, 1, top))
        ja(enosys)
        ja(filt)

    out.append(_insn(_LD_W_ABS, 0, 0, 4))
    for a, start in zip(arches, starts, strict=True):
        out.append(_insn(_JEQ_K, 0, 1, a))
        ja(start)
    ja(filt)
    for kind, top, top32 in sections:
        out.append(_insn(_LD_W_ABS, 0, 0, 0))
        if kind == "one":
            check(top)
        elif kind == "amd64":  # an x32 call goes to the filter (its bad-arch action)
            out.append(_insn(_JSET_K, 2, 0, X32_SYSCALL_BIT))
            check(top)
        elif kind == "x32":  # a plain x86_64 call goes to the filter
            out.append(_insn(_JSET_K, 0, 2, X32_SYSCALL_BIT))
            check(top)
        else:
            out.append(_insn(_JSET_K, 3, 0, X32_SYSCALL_BIT))
            check(top)
            check(top32)
    out.append(_insn(_RET_K, 0, 0, RET_ERRNO_ENOSYS))
    assert len(out) == filt, (len(out), filt)
    return b"".join(out)
