"""The -ENOSYS stub (berth.runtime.enosys) run through a small classic-BPF interpreter over
struct seccomp_data, in front of a stand-in filter that answers ALLOW: every (arch, nr) pair
of interest must reach the filter or get ENOSYS as runc's stub decides."""

import struct

import pytest

from berth.runtime import enosys

I386, X86_64, X32, AARCH64 = 0x40000003, 0xC000003E, 0x4000003E, 0xC00000B7
ALLOW = 0x7FFF0000
FILTER = struct.pack("=HBBI", 0x06, 0, 0, ALLOW)  # ret ALLOW


def run(prog: bytes, arch: int, nr: int) -> int:
    insns = [struct.unpack_from("=HBBI", prog, i) for i in range(0, len(prog), 8)]
    data = {0: nr & 0xFFFFFFFF, 4: arch}
    pc, acc = 0, 0
    for _ in range(10000):
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld [k]
            acc = data[k]
            pc += 1
        elif code == 0x06:  # ret k
            return k
        elif code == 0x05:  # ja k
            pc += 1 + k
        else:
            op = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if op else jf)
    raise AssertionError("no return")


@pytest.mark.parametrize("maxima,cases", [
    ({X86_64: {X86_64: 300}}, [(X86_64, 300, ALLOW), (X86_64, 301, enosys.RET_ERRNO_ENOSYS),
                               (X86_64, 0x40000000 | 500, ALLOW),  # x32: the filter decides
                               (I386, 999, ALLOW)]),
    ({X86_64: {X32: 0x40000000 | 200}}, [(X86_64, 0x40000000 | 201, enosys.RET_ERRNO_ENOSYS),
                                          (X86_64, 0x40000000 | 200, ALLOW),
                                          (X86_64, 999, ALLOW)]),
    ({X86_64: {X86_64: 300, X32: 0x40000000 | 200}, I386: {I386: 400}},
     [(X86_64, 301, enosys.RET_ERRNO_ENOSYS), (X86_64, 250, ALLOW),
      (X86_64, 0x40000000 | 250, enosys.RET_ERRNO_ENOSYS), (X86_64, 0x40000000 | 150, ALLOW),
      (I386, 400, ALLOW), (I386, 401, enosys.RET_ERRNO_ENOSYS), (AARCH64, 5000, ALLOW)]),
])
def test_stub_decisions(maxima, cases):
    prog = enosys.stub(maxima) + FILTER
    for arch, nr, want in cases:
        assert run(prog, arch, nr) == want, (hex(arch), hex(nr))


def test_many_architectures_need_no_long_conditional_jumps():
    maxima = {0x1000 + i: {0x1000 + i: 100} for i in range(200)}
    prog = enosys.stub(maxima) + FILTER
    assert len(prog) // 8 > 255  # far beyond what an 8-bit jt/jf could skip
    assert run(prog, 0x1000 + 199, 101) == enosys.RET_ERRNO_ENOSYS
    assert run(prog, 0x1000 + 199, 100) == ALLOW
    assert run(prog, 0x1000, 101) == enosys.RET_ERRNO_ENOSYS


def test_largest_and_when_it_is_needed():
    table = {("read", X86_64): 0, ("clone3", X86_64): 435, ("chown32", X86_64): -10004,
             ("read", I386): 3, ("chown32", I386): 212}
    got = enosys.largest(["read", "clone3", "chown32", "nope"], [X86_64, I386, X32],
                         lambda n, a: table.get((n, a), -1))
    assert got == {X86_64: {X86_64: 435}, I386: {I386: 212}}  # x32 knows none: left out
    assert not enosys.needed({"defaultAction": "SCMP_ACT_ALLOW"})
    assert not enosys.needed({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})
    assert enosys.needed({"defaultAction": "SCMP_ACT_ERRNO"})
    assert enosys.needed({"defaultAction": "SCMP_ACT_KILL_PROCESS"})
