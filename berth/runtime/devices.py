"""The device allow-list: linux.resources.devices evaluated the way runc's cgroup code does, and
turned into what each cgroup version enforces (v1 devices.allow/deny lines, a v2 eBPF program).

Semantics (runc's libcontainer/cgroups/devices emulator, reimplemented):

- Evaluation starts from *deny everything*. The rule list is the spec's
  ``linux.resources.devices`` in order, then runc's default allow-list (mknod of any char or
  block device; rwm of null, zero, full, random, urandom, tty, ptmx, /dev/pts/*, net/tun),
  which a spec cannot take away. linux.devices adds nodes, not rules (as with runc: Docker
  sends an allow rule for each --device).
- A rule of type ``a`` (or no type) resets the whole list to allow-all or deny-all, whatever
  its major, minor or access say, as cgroup v1 does.
- In deny-all mode an allow rule adds an exception and a deny rule removes one; in allow-all
  mode the other way round. Removing access that a *wildcard* exception of the same type grants
  (deny ``c 1:3 m`` while ``c *:* m`` is allowed) is an error, not a silent no-op: cgroup v1
  would ignore it and leave the device open.

The result is ``Rules(default_allow, {(type, major, minor): access})`` with -1 for a wildcard
and access as BPF_DEVCG_ACC_* bits. ``program()`` compiles it to a BPF_PROG_TYPE_CGROUP_DEVICE
program (one block per exception, first match wins, then the default); ``v1_lines()`` gives the
writes that bring a v1 devices cgroup from its current devices.list to the same state.
Pure logic: no syscalls (attaching is berth.runtime.cgroups' business, through berth.linux.bpf).
"""

from berth.runtime.errors import InvalidConfig

M, R, W = 1, 2, 4  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
RWM = M | R | W
_ACC = {"m": M, "r": R, "w": W}

# runc's specconv.AllowedDevices: appended to every container's rules.
DEFAULT_ALLOWED = [
    ("c", -1, -1, "m"), ("b", -1, -1, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"),
    ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"), ("c", 136, -1, "rwm"),
    ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
]


def access_bits(s: str) -> int:
    # Letters other than r, w, m are ignored, as runc's Permissions.toSet ignores them (its
    # own tests send "rwa"); berth.runtime.spec refuses an access with none of the three.
    bits = 0
    for ch in s:
        bits |= _ACC.get(ch, 0)
    return bits


def access_str(bits: int) -> str:
    return "".join(ch for ch, b in (("r", R), ("w", W), ("m", M)) if bits & b)


class Rules:
    """The evaluated allow-list: a default and its exceptions."""

    def __init__(self, default_allow: bool = False) -> None:
        self.default_allow = default_allow
        self.exceptions: dict[tuple[str, int, int], int] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rules) and (self.default_allow, self.exceptions) == (
            other.default_allow, other.exceptions)

    def __repr__(self) -> str:
        return f"Rules(default_allow={self.default_allow}, {self.exceptions})"

    def apply(self, allow: bool, typ: str, major: int, minor: int, access: int) -> None:
        if typ == "a":
            self.default_allow = allow
            self.exceptions = {}
            return
        key = (typ, major, minor)
        if allow != self.default_allow:  # an exception to the default
            self.exceptions[key] = self.exceptions.get(key, 0) | access
            return
        for wild in ((typ, -1, minor), (typ, major, -1), (typ, -1, -1)):
            if wild != key and self.exceptions.get(wild, 0) & access:
                raise ValueError(
                    f"cannot {'allow' if allow else 'deny'} {_show(key, access)}: the wildcard "
                    f"rule {_show(wild, self.exceptions[wild])} covers it (cgroup v1 cannot "
                    "punch a hole in a wildcard rule)")
        left = self.exceptions.get(key, 0) & ~access
        if left:
            self.exceptions[key] = left
        else:
            self.exceptions.pop(key, None)

    def sorted_exceptions(self) -> list[tuple[tuple[str, int, int], int]]:
        # (major, minor, type) order, as runc's emulator emits them: deterministic programs.
        return sorted(self.exceptions.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))

    def allows(self, typ: str, major: int, minor: int, access: int) -> bool:
        """What the compiled program answers for one access (for tests and `features`)."""
        for (t, ma, mi), acc in self.sorted_exceptions():
            if t == typ and ma in (-1, major) and mi in (-1, minor) and access & acc == access:
                return not self.default_allow
        return self.default_allow


def _show(key: tuple[str, int, int], access: int) -> str:
    t, ma, mi = key
    return f"{t} {'*' if ma < 0 else ma}:{'*' if mi < 0 else mi} {access_str(access)}"


def spec_rules(devices: list[dict] | None) -> list[tuple[bool, str, int, int, int]]:
    """linux.resources.devices (already type-checked by berth.runtime.spec) as tuples."""
    out = []
    for d in devices or ():
        t = d.get("type") or "a"
        ma = d.get("major")
        mi = d.get("minor")
        out.append((bool(d["allow"]), t, -1 if ma is None else ma, -1 if mi is None else mi,
                    access_bits(d.get("access") or "rwm")))
    return out


def evaluate(devices: list[dict] | None, field: str = "linux.resources.devices") -> Rules:
    """The container's allow-list: deny-all, the spec's rules, then runc's defaults."""
    rules = Rules(False)
    for i, (allow, t, ma, mi, acc) in enumerate(spec_rules(devices)):
        if not (ma == -1 or 0 <= ma < (1 << 32)) or not (mi == -1 or 0 <= mi < (1 << 32)):
            raise InvalidConfig(f"{field}[{i}]: major and minor must be -1 or 0..4294967295")
        try:
            rules.apply(allow, t, ma, mi, acc)
        except ValueError as e:
            raise InvalidConfig(f"{field}[{i}]: {e}") from None
    for t, ma, mi, acc in DEFAULT_ALLOWED:
        try:
            rules.apply(True, t, ma, mi, access_bits(acc))
        except ValueError as e:  # only in allow-all mode, where a default is a removal
            raise InvalidConfig(f"{field}: {e}") from None
    return rules


def program(rules: Rules) -> bytes:
    """The eBPF program enforcing ``rules`` (R1 = struct bpf_cgroup_dev_ctx *; R0 = 1 allows).

        R2 = type  (access_type & 0xffff)       R3 = access (access_type >> 16)
        R4 = major                              R5 = minor
        per exception: if R2 != type goto next; [if R3 & acc != R3 goto next;]
                       [if R4 != major goto next;] [if R5 != minor goto next;] return verdict
        return default
    """
    from berth.linux import bpf as b

    out = [b.ldx_w(2, 1, 0), b.and32_imm(2, 0xFFFF), b.ldx_w(3, 1, 0), b.rsh32_imm(3, 16),
           b.ldx_w(4, 1, 4), b.ldx_w(5, 1, 8)]
    verdict = 0 if rules.default_allow else 1
    for (t, ma, mi), acc in rules.sorted_exceptions():
        # Build the block's tests first: each jumps past the rest of the block.
        tests: list[tuple] = [("jne_imm", 2, b.BPF_DEVCG_DEV_CHAR if t == "c" else
                               b.BPF_DEVCG_DEV_BLOCK)]
        if acc != RWM:
            tests += [("mov", 1, 3), ("and", 1, acc), ("jne_reg", 1, 3)]
        if ma >= 0:
            tests.append(("jne_imm", 4, ma))
        if mi >= 0:
            tests.append(("jne_imm", 5, mi))
        n = len(tests) + 2  # + mov r0, exit
        for i, (op, dst, x) in enumerate(tests):
            skip = n - i - 1  # instructions after this one in the block
            if op == "jne_imm":
                out.append(b.jne32_imm(dst, x, skip))
            elif op == "jne_reg":
                out.append(b.jne32_reg(dst, x, skip))
            elif op == "mov":
                out.append(b.mov32_reg(dst, x))
            else:
                out.append(b.and32_imm(dst, x))
        out += [b.mov32_imm(0, verdict), b.exit_()]
    out += [b.mov32_imm(0, 1 if rules.default_allow else 0), b.exit_()]
    return b"".join(out)


def parse_v1_list(text: str) -> Rules:
    """A v1 devices.list as Rules. ``a *:* rwm`` means allow-all (its deny exceptions are not
    listed by the kernel, so such a cgroup can only be treated as allow-all)."""
    rules = Rules(False)
    for line in text.splitlines():
        f = line.replace(":", " ").split()
        if len(f) != 4:
            continue
        t, ma, mi, acc = f
        if t == "a":
            rules = Rules(True)
            continue
        rules.apply(True, t, -1 if ma == "*" else int(ma), -1 if mi == "*" else int(mi),
                    access_bits(acc))
    return rules


def v1_lines(current: Rules, target: Rules) -> list[tuple[str, str]]:
    """(file, line) writes that take a v1 devices cgroup from ``current`` to ``target`` with the
    least disruption (no deny-all moment unless the default changes), as runc's Transition."""
    out: list[tuple[str, str]] = []
    old = current.exceptions
    if current.default_allow or current.default_allow != target.default_allow:
        out.append(("devices.allow" if target.default_allow else "devices.deny", "a"))
        old = {}
    grant = "devices.deny" if target.default_allow else "devices.allow"
    revoke = "devices.allow" if target.default_allow else "devices.deny"

    def line(key, acc):
        t, ma, mi = key
        return f"{t} {'*' if ma < 0 else ma}:{'*' if mi < 0 else mi} {access_str(acc)}"

    order = sorted(set(old) | set(target.exceptions), key=lambda k: (k[1], k[2], k[0]))
    for key in order:
        dropped = old.get(key, 0) & ~target.exceptions.get(key, 0)
        if dropped:
            out.append((revoke, line(key, dropped)))
    for key in order:
        gained = target.exceptions.get(key, 0) & ~old.get(key, 0)
        if gained:
            out.append((grant, line(key, gained)))
    return out
