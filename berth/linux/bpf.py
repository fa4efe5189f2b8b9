"""bpf(2): load, attach, detach and query programs, and an encoder for the few eBPF instructions
berth emits (a cgroup device filter needs loads, 32-bit ALU, 32-bit compares, mov and exit).

No policy here: the program a container gets is built by berth.runtime.devices. An instruction
is the kernel's ``struct bpf_insn`` (include/uapi/linux/bpf.h), 8 bytes little-endian on the
architectures berth runs on::

    u8 code | u8 dst_reg:4, src_reg:4 | s16 off | s32 imm

Jump offsets count instructions from the one after the jump.
"""

import ctypes
import os

from ._libc import MACHINE, libc

# bpf(2) commands
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_OVERRIDE = 1
BPF_F_ALLOW_MULTI = 2
BPF_F_REPLACE = 4

# struct bpf_cgroup_dev_ctx: u32 access_type (type low 16 bits, access high 16), major, minor
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2

_SYSNO = {"x86_64": 321, "aarch64": 280}

# instruction classes, sizes, modes, operations, sources (uapi/linux/bpf_common.h, bpf.h)
_LDX, _ALU, _JMP, _JMP32 = 0x01, 0x04, 0x05, 0x06
_W, _MEM = 0x00, 0x60
_K, _X = 0x00, 0x08
_AND, _RSH, _MOV = 0x50, 0x70, 0xB0
_JEQ, _JNE, _EXIT = 0x10, 0x50, 0x90


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    if not -(1 << 15) <= off < (1 << 15):
        raise ValueError(f"bpf: jump offset {off} does not fit in 16 bits")
    if not -(1 << 31) <= imm < (1 << 32):
        raise ValueError(f"bpf: immediate {imm} does not fit in 32 bits")
    return bytes((code, (src << 4) | dst)) + (off & 0xFFFF).to_bytes(2, "little") + \
        (imm & 0xFFFFFFFF).to_bytes(4, "little")


def ldx_w(dst: int, src: int, off: int) -> bytes:
    """dst = *(u32 *)(src + off)"""
    return _insn(_LDX | _MEM | _W, dst, src, off)


def and32_imm(dst: int, imm: int) -> bytes:
    return _insn(_ALU | _AND | _K, dst, imm=imm)


def rsh32_imm(dst: int, imm: int) -> bytes:
    return _insn(_ALU | _RSH | _K, dst, imm=imm)


def mov32_imm(dst: int, imm: int) -> bytes:
    return _insn(_ALU | _MOV | _K, dst, imm=imm)


def mov32_reg(dst: int, src: int) -> bytes:
    return _insn(_ALU | _MOV | _X, dst, src)


def jne32_imm(dst: int, imm: int, off: int) -> bytes:
    """if (u32)dst != (u32)imm: skip ``off`` instructions"""
    return _insn(_JMP32 | _JNE | _K, dst, off=off, imm=imm)


def jne32_reg(dst: int, src: int, off: int) -> bytes:
    return _insn(_JMP32 | _JNE | _X, dst, src, off=off)


def exit_() -> bytes:
    return _insn(_JMP | _EXIT)


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    try:
        nr = _SYSNO[MACHINE]
    except KeyError:
        raise OSError(38, f"bpf: no syscall number known for {MACHINE}") from None
    r = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf: {os.strerror(e)}")
    return r


def _attr(*fields: tuple[int, int, int]) -> ctypes.Array:
    """A zeroed ``union bpf_attr`` (128 bytes is more than any command here reads) with
    (offset, size, value) fields set."""
    buf = (ctypes.c_char * 128)()
    for off, size, value in fields:
        ctypes.memmove(ctypes.byref(buf, off), value.to_bytes(size, "little"), size)
    return buf


def prog_load(prog_type: int, insns: bytes, license: str, name: str = "",
              log_size: int = 0) -> int:
    """BPF_PROG_LOAD: an fd of the verified program. With ``log_size`` the verifier's log is
    put in the error message on failure."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    log = ctypes.create_string_buffer(log_size) if log_size else None
    fields = [(0, 4, prog_type), (4, 4, len(insns) // 8),
              (8, 8, ctypes.addressof(code)), (16, 8, ctypes.addressof(lic))]
    if log is not None:
        fields += [(24, 4, 1), (28, 4, log_size), (32, 8, ctypes.addressof(log))]
    attr = _attr(*fields)
    if name:
        # char prog_name[16] at offset 48 (after kern_version and prog_flags)
        raw = name.encode()[:15]
        ctypes.memmove(ctypes.byref(attr, 48), raw, len(raw))
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        if log is not None and log.value:
            text = log.value.decode(errors="replace").strip().replace("\n", "; ")
            raise OSError(e.errno, f"bpf prog load: {e.strerror}: {text}") from None
        raise OSError(e.errno, f"bpf prog load: {os.strerror(e.errno)}") from None


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0,
                replace_fd: int = 0) -> None:
    """BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd"""
    attr = _attr((0, 4, target_fd), (4, 4, prog_fd), (8, 4, attach_type), (12, 4, flags),
                 (16, 4, replace_fd))
    try:
        _bpf(BPF_PROG_ATTACH, attr)
    except OSError as e:
        raise OSError(e.errno, f"bpf prog attach: {os.strerror(e.errno)}") from None


def prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    attr = _attr((0, 4, target_fd), (4, 4, prog_fd), (8, 4, attach_type))
    try:
        _bpf(BPF_PROG_DETACH, attr)
    except OSError as e:
        raise OSError(e.errno, f"bpf prog detach: {os.strerror(e.errno)}") from None


def prog_query(target_fd: int, attach_type: int) -> list[int]:
    """BPF_PROG_QUERY: the ids of the programs attached directly to ``target_fd``."""
    n = 64  # the kernel's cap per cgroup and attach type (BPF_CGROUP_MAX_PROGS)
    for _ in range(4):
        ids = (ctypes.c_uint32 * n)()
        # target_fd, attach_type, query_flags, attach_flags, prog_ids (u64), prog_cnt
        attr = _attr((0, 4, target_fd), (4, 4, attach_type), (16, 8, ctypes.addressof(ids)),
                     (24, 4, n))
        try:
            _bpf(BPF_PROG_QUERY, attr)
        except OSError as e:
            if e.errno == 28:  # ENOSPC: prog_cnt now says how many there are
                n = int.from_bytes(bytes(attr[24:28]), "little")
                continue
            raise OSError(e.errno, f"bpf prog query: {os.strerror(e.errno)}") from None
        cnt = int.from_bytes(bytes(attr[24:28]), "little")
        return list(ids[:cnt])
    raise OSError(28, "bpf prog query: the list of programs keeps growing")


def prog_get_fd_by_id(prog_id: int) -> int:
    try:
        return _bpf(BPF_PROG_GET_FD_BY_ID, _attr((0, 4, prog_id)))
    except OSError as e:
        raise OSError(e.errno, f"bpf prog get fd by id {prog_id}: "
                               f"{os.strerror(e.errno)}") from None


def prog_info(prog_fd: int) -> dict:
    """A few fields of struct bpf_prog_info: type, id, name."""
    info = (ctypes.c_char * 256)()
    attr = _attr((0, 4, prog_fd), (4, 4, 256), (8, 8, ctypes.addressof(info)))
    try:
        _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    except OSError as e:
        raise OSError(e.errno, f"bpf obj get info: {os.strerror(e.errno)}") from None
    raw = bytes(info)
    # u32 type, u32 id, u8 tag[8], u32 jited_prog_len, u32 xlated_prog_len, u64 jited_insns,
    # u64 xlated_prog_insns, u64 load_time, u32 created_by_uid, u32 nr_map_ids, u64 map_ids,
    # char name[16] at 64
    return {"type": int.from_bytes(raw[0:4], "little"), "id": int.from_bytes(raw[4:8], "little"),
            "name": raw[64:80].split(b"\0", 1)[0].decode(errors="replace")}
