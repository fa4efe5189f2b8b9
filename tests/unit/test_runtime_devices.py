"""The device allow-list (berth.runtime.devices): runc's evaluation rules, the v1 writes, and the
eBPF program run here on a small interpreter of the instructions it uses, checked against the
rules for every device and access of interest. (tests/runtime/test_devices_bpf.py loads the
same programs into the kernel.)"""

import itertools
import random

import pytest

from berth.runtime import devices
from berth.runtime.errors import InvalidConfig

DENY_ALL = [{"allow": False, "access": "rwm"}]
DEFAULTS = {("c", -1, -1): devices.M, ("b", -1, -1): devices.M,
            **{("c", ma, mi): devices.RWM for ma, mi in
               ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (10, 200), (136, -1))}}


def run_bpf(prog: bytes, typ: int, access: int, major: int, minor: int) -> int:
    """Execute ``prog`` on one struct bpf_cgroup_dev_ctx; only the opcodes berth emits."""
    ctx = ((access << 16) | typ, major, minor)
    reg = [0] * 11
    pc = 0
    insns = [prog[i:i + 8] for i in range(0, len(prog), 8)]
    steps = 0
    while True:
        steps += 1
        assert steps < 10000, "the program loops"
        code, regs = insns[pc][0], insns[pc][1]
        dst, src = regs & 0xF, regs >> 4
        off = int.from_bytes(insns[pc][2:4], "little", signed=True)
        imm = int.from_bytes(insns[pc][4:8], "little")
        pc += 1
        if code == 0x61:  # ldx w
            assert src == 1 and off in (0, 4, 8)
            reg[dst] = ctx[off // 4]
        elif code == 0x54:
            reg[dst] = reg[dst] & imm
        elif code == 0x74:
            reg[dst] = (reg[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xB4:
            reg[dst] = imm
        elif code == 0xBC:
            reg[dst] = reg[src] & 0xFFFFFFFF
        elif code == 0x56:  # jmp32 jne imm
            if reg[dst] & 0xFFFFFFFF != imm:
                pc += off
        elif code == 0x5E:  # jmp32 jne reg
            if reg[dst] & 0xFFFFFFFF != reg[src] & 0xFFFFFFFF:
                pc += off
        elif code == 0x95:
            return reg[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def check_program(rules: devices.Rules, extra=()):
    prog = devices.program(rules)
    assert len(prog) % 8 == 0
    majors = {1, 5, 8, 10, 136, 254, 4095} | {k[1] for k in rules.exceptions if k[1] >= 0}
    minors = {0, 1, 3, 5, 200, 229, 1 << 19} | {k[2] for k in rules.exceptions if k[2] >= 0}
    for t, ma, mi, acc in itertools.product("cb", majors, minors, range(1, 8)):
        want = rules.allows(t, ma, mi, acc)
        got = run_bpf(prog, 2 if t == "c" else 1, acc, ma, mi)
        assert got == int(want), (t, ma, mi, devices.access_str(acc))


def test_default_spec_is_deny_all_plus_runc_defaults():
    r = devices.evaluate(DENY_ALL)
    assert not r.default_allow
    assert r.exceptions == DEFAULTS
    # no rules at all is the same: evaluation starts from deny-all, as runc's does
    assert devices.evaluate(None) == r
    assert r.allows("c", 1, 3, devices.R | devices.W)
    assert r.allows("b", 8, 0, devices.M)  # mknod of any node is allowed ...
    assert not r.allows("b", 8, 0, devices.R)  # ... but opening a disk is not
    assert not r.allows("c", 1, 1, devices.R)  # /dev/mem
    check_program(r)


def test_allow_rules_add_and_merge():
    r = devices.evaluate(DENY_ALL + [
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "r"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "w"},
        {"allow": True, "type": "b", "major": 8, "access": "r"},
    ])
    assert r.exceptions[("c", 10, 229)] == devices.R | devices.W
    assert r.exceptions[("b", 8, -1)] == devices.R
    assert r.allows("b", 8, 17, devices.R) and not r.allows("b", 8, 17, devices.W)
    check_program(r)


def test_a_type_resets_whatever_its_numbers_say():
    r = devices.evaluate([{"allow": True, "type": "a", "major": 1, "minor": 1, "access": "r"}])
    assert r.default_allow and r.exceptions == {}
    assert r.allows("b", 8, 0, devices.RWM)
    assert devices.program(r)[-16:] == bytes.fromhex("b400000001000000") + \
        bytes.fromhex("9500000000000000")
    check_program(r)


def test_deny_list_mode():
    r = devices.evaluate([{"allow": True, "access": "rwm"},
                          {"allow": False, "type": "b", "major": 8, "access": "rw"},
                          {"allow": False, "type": "c", "major": 1, "minor": 1}])
    assert r.default_allow
    assert r.exceptions == {("b", 8, -1): devices.R | devices.W, ("c", 1, 1): devices.RWM}
    assert not r.allows("b", 8, 1, devices.R) and r.allows("b", 8, 1, devices.M)
    assert not r.allows("c", 1, 1, devices.M)
    check_program(r)


def test_removing_a_partial_exception():
    r = devices.evaluate(DENY_ALL + [
        {"allow": True, "type": "c", "major": 4, "minor": 7, "access": "rwm"},
        {"allow": False, "type": "c", "major": 4, "minor": 7, "access": "w"}])
    assert r.exceptions[("c", 4, 7)] == devices.R | devices.M
    check_program(r)


def test_punching_a_hole_in_a_wildcard_is_refused():
    rules = DENY_ALL + [{"allow": True, "type": "c", "access": "rw"},
                        {"allow": False, "type": "c", "major": 1, "minor": 1, "access": "r"}]
    with pytest.raises(InvalidConfig, match=r"linux.resources.devices\[2\]: cannot deny "
                                            r"c 1:1 r: the wildcard rule c \*:\* rw"):
        devices.evaluate(rules)


def test_bad_numbers_named():
    with pytest.raises(InvalidConfig, match=r"devices\[1\]: major and minor"):
        devices.evaluate(DENY_ALL + [{"allow": True, "type": "c", "major": -7,
                                      "access": "r"}])


def test_random_rule_lists_compile_to_what_they_mean():
    rnd = random.Random(7)
    for _ in range(60):
        lst = []
        for _ in range(rnd.randint(0, 8)):
            lst.append({"allow": rnd.random() < 0.6, "type": rnd.choice("abcc"),
                        "major": rnd.choice([None, 1, 8, 10, 136]),
                        "minor": rnd.choice([None, 0, 3, 229]),
                        "access": "".join(c for c in "rwm" if rnd.random() < 0.6) or "r"})
        try:
            r = devices.evaluate(lst)
        except InvalidConfig:
            continue
        check_program(r)


def test_v1_transition_from_a_new_cgroup_and_between_lists():
    new_cg = devices.parse_v1_list("a *:* rwm\n")
    assert new_cg.default_allow
    target = devices.evaluate(DENY_ALL)
    lines = devices.v1_lines(new_cg, target)
    assert lines[0] == ("devices.deny", "a")
    assert ("devices.allow", "c 136:* rwm") in lines and ("devices.allow", "b *:* m") in lines
    # what the kernel then lists, read back, is the same state: nothing left to write
    listed = "\n".join(line for _, line in lines[1:])
    assert devices.parse_v1_list(listed) == target
    assert devices.v1_lines(devices.parse_v1_list(listed), target) == []
    # one more device, then one fewer: only the difference is written, no deny-all moment
    more = devices.evaluate(DENY_ALL + [{"allow": True, "type": "c", "major": 10,
                                         "minor": 229, "access": "rw"}])
    assert devices.v1_lines(target, more) == [("devices.allow", "c 10:229 rw")]
    assert devices.v1_lines(more, target) == [("devices.deny", "c 10:229 rw")]


def test_unknown_access_letters_are_ignored_as_runc_does():
    """runc's own tests send "rwa": runc keeps r and w and drops the rest."""
    rules = devices.evaluate([{"allow": False, "access": "rwm"},
                              {"allow": True, "type": "c", "major": 1, "minor": 11,
                               "access": "rwa"}])
    assert rules.exceptions[("c", 1, 11)] == devices.R | devices.W
