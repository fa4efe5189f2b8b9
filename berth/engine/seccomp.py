"""The default seccomp profile and the conversion of Docker-format profiles to OCI seccomp.

A profile is in Docker's format (what ``--security-opt seccomp=FILE`` gives and moby's
profiles/seccomp/default.json uses): ``defaultAction``, ``defaultErrnoRet``, ``archMap`` and
``syscalls`` rules, each rule with ``names``, ``action``, optional ``errnoRet``/``args`` and
``includes``/``excludes`` conditions on the container's capabilities, the architecture and the
kernel version. ``to_oci`` resolves those conditions for one container and returns the OCI
``linux.seccomp`` object the runtime loads.

The default profile is an allowlist written from the kernel's syscall table (x86_64 and the
32-bit/ARM names of the same calls): everything not listed fails with EPERM. What is left out,
and why:

- calls that act on the whole host and are not namespaced: kernel modules, kexec, reboot,
  swap, clock setting, accounting, quotas, the kernel keyring (add_key/keyctl/request_key),
  ioperm/iopl, syslog, the obsolete sysctl/uselib/ustat/sysfs, vm86;
- calls that escape or reshape namespaces: mount and the new mount API, umount, pivot_root,
  unshare, setns, clone/clone3 with namespace flags;
- kernel attack surface with a record of exploits: bpf, perf_event_open, userfaultfd, io_uring,
  open_by_handle_at (the "shocker" escape), lookup_dcookie, AF_VSOCK and AF_ALG sockets;
- NUMA memory policy (mbind, set_mempolicy, move_pages, ...), which can starve other tenants.

Each of these is allowed again when the container holds the capability that governs it (e.g.
``--cap-add SYS_ADMIN`` allows mount, ``SYS_TIME`` allows clock_settime), as Docker does.
``clone3`` without CAP_SYS_ADMIN fails with ENOSYS rather than EPERM: its flags are in memory
where seccomp cannot look, and ENOSYS makes glibc fall back to ``clone``, whose flags it can.

Stdlib only and free of ``json`` at import (berthd imports it at start-up).
"""

from __future__ import annotations

import os

from berth.errors import InvalidArgument


class InvalidSeccompProfile(InvalidArgument):
    pass


# Namespace flags of clone(2): CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID |
# NEWNET.
_CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 \
    | 0x40000000
_AF_ALG = 38
_AF_VSOCK = 40
_ENOSYS = 38
_EPERM = 1


def _split(text: str) -> list[str]:
    return text.split()


_ALLOWED_GROUPS = {
    "files and descriptors": """
        read write readv writev pread64 pwrite64 preadv preadv2 pwritev pwritev2 open openat
        openat2 creat close close_range lseek _llseek dup dup2 dup3 fcntl fcntl64 flock fsync
        fdatasync sync syncfs sync_file_range truncate truncate64 ftruncate ftruncate64
        fallocate fadvise64 fadvise64_64 readahead sendfile sendfile64 splice tee vmsplice
        copy_file_range ioctl cachestat
    """,
    "metadata, names, directories": """
        stat stat64 fstat fstat64 lstat lstat64 newfstatat fstatat64 statx statfs statfs64
        fstatfs fstatfs64 access faccessat faccessat2 chmod fchmod fchmodat fchmodat2 chown
        chown32 fchown fchown32 fchownat lchown lchown32 utime utimes utimensat utimensat_time64
        futimesat umask rename renameat renameat2 link linkat symlink symlinkat unlink unlinkat
        mkdir mkdirat rmdir mknod mknodat readlink readlinkat getdents getdents64 getcwd chdir
        fchdir
    """,
    "extended attributes": """
        setxattr lsetxattr fsetxattr setxattrat getxattr lgetxattr fgetxattr getxattrat
        listxattr llistxattr flistxattr listxattrat removexattr lremovexattr fremovexattr
        removexattrat
    """,
    "memory": """
        brk mmap mmap2 munmap mremap mprotect pkey_mprotect pkey_alloc pkey_free madvise mincore
        mlock mlock2 munlock mlockall munlockall msync remap_file_pages memfd_create membarrier
        map_shadow_stack mseal
    """,
    "signals": """
        rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigtimedwait
        rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo rt_sigsuspend sigaction
        sigaltstack signal signalfd signalfd4 sigpending sigprocmask sigreturn sigsuspend kill
        tkill tgkill pause alarm pidfd_open pidfd_send_signal
    """,
    "processes and scheduling": """
        fork vfork execve execveat exit exit_group wait4 waitid waitpid getpid getppid gettid
        getpgid setpgid getpgrp getsid setsid set_tid_address set_robust_list get_robust_list
        futex futex_time64 futex_waitv futex_wake futex_wait futex_requeue restart_syscall rseq
        prctl seccomp capget capset uname sysinfo times getrusage getrlimit setrlimit ugetrlimit
        prlimit64 getpriority setpriority sched_yield sched_getaffinity sched_setaffinity
        sched_getparam sched_setparam sched_getscheduler sched_setscheduler
        sched_get_priority_max sched_get_priority_min sched_rr_get_interval
        sched_rr_get_interval_time64 sched_getattr sched_setattr getcpu ioprio_get ioprio_set
        process_mrelease get_thread_area set_thread_area landlock_create_ruleset
        landlock_add_rule landlock_restrict_self
        getrandom
    """,
    "user and group ids (the process's own, within its capabilities)": """
        getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 setuid setuid32
        setgid setgid32 setreuid setreuid32 setregid setregid32 setresuid setresuid32 getresuid
        getresuid32 setresgid setresgid32 getresgid getresgid32 getgroups getgroups32 setgroups
        setgroups32 setfsuid setfsuid32 setfsgid setfsgid32
    """,
    "clocks and timers (reading; adjtimex only changes the clock with CAP_SYS_TIME)": """
        time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
        clock_nanosleep clock_nanosleep_time64 nanosleep timer_create timer_delete timer_settime
        timer_settime64 timer_gettime timer_gettime64 timer_getoverrun timerfd_create
        timerfd_settime timerfd_settime64 timerfd_gettime timerfd_gettime64 getitimer setitimer
        adjtimex
    """,
    "waiting for events": """
        select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64 epoll_create
        epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait epoll_pwait2
        eventfd eventfd2 inotify_init inotify_init1 inotify_add_watch inotify_rm_watch
        fanotify_mark io_setup io_destroy io_getevents io_pgetevents io_pgetevents_time64
        io_submit io_cancel
    """,
    "System V and POSIX IPC (namespaced)": """
        pipe pipe2 shmget shmat shmdt shmctl semget semop semtimedop semtimedop_time64 semctl
        msgget msgsnd msgrcv msgctl mq_open mq_unlink mq_timedsend mq_timedsend_time64
        mq_timedreceive mq_timedreceive_time64 mq_notify mq_getsetattr ipc
    """,
    "sockets (socket itself is filtered by family below)": """
        socketpair bind listen accept accept4 connect getsockname getpeername send sendto
        sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64 shutdown setsockopt
        getsockopt socketcall
    """,
}
_ALLOWED = sorted({n for names in _ALLOWED_GROUPS.values() for n in _split(names)})


# The personas that do not weaken the container: the default, PER_LINUX32, UNAME26 and both,
# and 0xffffffff, which only queries. ADDR_NO_RANDOMIZE and READ_IMPLIES_EXEC stay refused.
_PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# calls governed by one capability: allowed when the container holds it
_BY_CAPABILITY = {
    "CAP_SYS_ADMIN": """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick
        lookup_dcookie mount mount_setattr move_mount open_tree perf_event_open quotactl
        quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare
        listmount statmount pivot_root swapon swapoff""",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at name_to_handle_at",
    "CAP_SYS_BOOT": "reboot kexec_load kexec_file_load",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "init_module finit_module delete_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64 clock_adjtime "
                    "clock_adjtime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node move_pages "
                    "migrate_pages",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

# Architecture-specific calls, keyed by Go's architecture names as Docker's profiles use them.
_BY_ARCH = {
    ("amd64", "x32", "x86"): "modify_ldt",
    ("amd64", "x32"): "arch_prctl",
    ("arm", "arm64"): "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint "
                      "cacheflush set_tls",
    ("s390", "s390x"): "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
    ("ppc64le",): "sync_file_range2 swapcontext",
    ("riscv64",): "riscv_flush_icache",
}


def _rule(names: str | list[str], **kw) -> dict:
    r: dict = {"names": sorted(names.split()) if isinstance(names, str) else names,
               "action": "SCMP_ACT_ALLOW"}
    r.update(kw)
    return r


def _default_profile() -> dict:
    rules = [_rule(list(_ALLOWED))]
    # ptrace lost its seccomp bypass in 4.8; from then on it is as safe as the process's own
    # ptrace_may_access checks (the pid namespace already hides the host's processes).
    rules.append(_rule("ptrace process_vm_readv process_vm_writev",
                       includes={"minKernel": "4.8"}))
    rules += [_rule(["personality"], args=[{"index": 0, "value": p, "valueTwo": 0,
                                            "op": "SCMP_CMP_EQ"}]) for p in _PERSONAS]
    # every address family but AF_ALG and AF_VSOCK (socket's first argument). One condition a
    # rule: runtimes (runc, berth-runtime) read two conditions on one argument as alternatives.
    rules += [
        _rule(["socket"], args=[{"index": 0, "value": _AF_ALG, "valueTwo": 0,
                                 "op": "SCMP_CMP_LT"}]),
        _rule(["socket"], args=[{"index": 0, "value": _AF_ALG + 1, "valueTwo": 0,
                                 "op": "SCMP_CMP_EQ"}]),
        _rule(["socket"], args=[{"index": 0, "value": _AF_VSOCK, "valueTwo": 0,
                                 "op": "SCMP_CMP_GT"}]),
    ]
    for arches, names in _BY_ARCH.items():
        rules.append(_rule(names, includes={"arches": list(arches)}))
    for cap, names in _BY_CAPABILITY.items():
        rules.append(_rule(names, includes={"caps": [cap]}))
    # clone without namespace flags for everyone; s390 swaps clone's first two arguments.
    rules.append(_rule(["clone"], args=[{"index": 0, "value": _CLONE_NS_FLAGS, "valueTwo": 0,
                                         "op": "SCMP_CMP_MASKED_EQ"}],
                       excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}))
    rules.append(_rule(["clone"], args=[{"index": 1, "value": _CLONE_NS_FLAGS, "valueTwo": 0,
                                         "op": "SCMP_CMP_MASKED_EQ"}],
                       includes={"arches": ["s390", "s390x"]},
                       excludes={"caps": ["CAP_SYS_ADMIN"]}))
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS,
                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": _EPERM,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64",
             "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            {"architecture": "SCMP_ARCH_PPC64LE", "subArchitectures": []},
            {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
            {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": []},
        ],
        "syscalls": rules,
    }


DEFAULT_PROFILE = _default_profile()

# uname -m → (Go's name, libseccomp's name)
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "i686": ("x86", "SCMP_ARCH_X86"),
}

_ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
            "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
            "SCMP_ACT_NOTIFY")
_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
        "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")


def _kernel_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("-")[0].split(".")[:3]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        out.append(int(digits or 0))
    return tuple(out)


def parse_profile(text: str) -> dict:
    """A Docker-format profile from ``--security-opt seccomp=<json>``, checked."""
    import json

    try:
        p = json.loads(text)
    except ValueError as e:
        raise InvalidSeccompProfile(f"decoding seccomp profile failed: {e}") from None
    if not isinstance(p, dict):
        raise InvalidSeccompProfile("decoding seccomp profile failed: not a JSON object")
    if p.get("architectures") and p.get("archMap"):
        raise InvalidSeccompProfile("both 'architectures' and 'archMap' are specified in the "
                                    "seccomp profile, use either 'architectures' or 'archMap'")
    for rule in p.get("syscalls") or []:
        if not isinstance(rule, dict):
            raise InvalidSeccompProfile("decoding seccomp profile failed: a syscall rule is "
                                        "not an object")
        if rule.get("name") and rule.get("names"):
            raise InvalidSeccompProfile("use either 'name' or 'names'")
        if rule.get("action") not in _ACTIONS:
            raise InvalidSeccompProfile(f"unknown seccomp action: {rule.get('action')!r}")
        for a in rule.get("args") or []:
            if a.get("op") not in _OPS:
                raise InvalidSeccompProfile(f"unknown seccomp operator: {a.get('op')!r}")
    if p.get("defaultAction") not in _ACTIONS:
        raise InvalidSeccompProfile(f"unknown seccomp default action: "
                                    f"{p.get('defaultAction')!r}")
    return p


_X32: bool | None = None


def _kernel_runs_x32() -> bool:
    global _X32
    if _X32 is None:
        try:
            from berth.linux.abi import x32_supported

            _X32 = x32_supported()
        except OSError:
            _X32 = True
    return _X32


def to_oci(profile: dict, caps: list[str], machine: str | None = None,
           kernel: str | None = None) -> dict:
    """The OCI ``linux.seccomp`` for a container with ``caps`` on this machine and kernel.

    The x32 sub-architecture is left out when the kernel does not run x32 (most do not): an
    x32 call is then refused by the filter's architecture check as it would be by the kernel,
    and the filter costs a third less to build at every container start (~4 ms here).
    """
    u = os.uname()
    machine = machine or u.machine
    kernel_v = _kernel_tuple(kernel or u.release)
    goarch, scmp_arch = _ARCHES.get(machine, (machine, ""))
    out: dict = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    elif profile.get("archMap"):
        for m in profile["archMap"]:
            if m["architecture"] == scmp_arch:
                subs = [a for a in m.get("subArchitectures", [])
                        if a != "SCMP_ARCH_X32" or (machine == u.machine and
                                                    _kernel_runs_x32())]
                out["architectures"] = [scmp_arch, *subs]
                break
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    if profile.get("listenerPath"):
        out["listenerPath"] = profile["listenerPath"]
    capset = set(caps)

    def applies(rule: dict) -> bool:
        inc = rule.get("includes") or {}
        exc = rule.get("excludes") or {}
        if inc.get("arches") and goarch not in inc["arches"]:
            return False
        if inc.get("caps") and not all(c in capset for c in inc["caps"]):
            return False
        if inc.get("minKernel") and kernel_v < _kernel_tuple(inc["minKernel"]):
            return False
        if exc.get("arches") and goarch in exc["arches"]:
            return False
        return not (exc.get("caps") and any(c in capset for c in exc["caps"]))

    syscalls = []
    for rule in profile.get("syscalls") or []:
        if not applies(rule):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not names:
            continue
        r: dict = {"names": list(names), "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            r["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            r["args"] = [{"index": a["index"], "value": a.get("value", 0),
                          "valueTwo": a.get("valueTwo", 0), "op": a["op"]}
                         for a in rule["args"]]
        syscalls.append(r)
    out["syscalls"] = syscalls
    return out
