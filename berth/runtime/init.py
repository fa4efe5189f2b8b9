"""The container's init: a fresh exec of the interpreter, never a fork of the runtime's command.

The runtime's command (the parent) starts ``python -I -S -c "...init.main()" RFD WFD CONSOLE``
and talks to it over two pipes, one line per message (``TAG payload\\n``). Stage 0 is that
fresh process; it joins and unshares the namespaces, then forks once so that the child is
PID 1 of a new pid namespace (as runc's nsexec does in C before any Go thread exists):

    parent (berth-runtime)                 stage 0 (fresh exec)              pid 1 (its fork)
    ──────────────────────                 ────────────────────              ────────────────
    spawn ───────────────────────────────▶ import (≈3 ms ctypes)
    PLAN <json> ─────────────────────────▶ oom_score_adj; setns(paths)
                                           unshare(user)
               ◀───────────────────────── USERNS                    (only for a new user ns)
    write uid_map, gid_map; MAPPED ──────▶ unshare(mnt uts ipc net pid)
                                           fork ─────────────────────────▶ waits for GO
               ◀───────────────────────── PID <host pid of pid 1>
                                           exit, or in the foreground wait
                                           for pid 1 and exit with its status
    cgroup.procs ← pid; GO ──────────────────────────────────────────────▶ unshare(cgroup)
                                                                           mounts, devices
               ◀──────────────────────────────────────────────────────── HOOKS   (if any)
    createRuntime hooks; HOOKED ─────────────────────────────────────────▶ createContainer hooks
                                                                           pivot_root, sysctl,
                                                                           ro/masked paths,
                                                                           rlimits, user, caps,
                                                                           seccomp, exec lookup
               ◀──────────────────────────────────────────────────────── READY
    state.json; exit (create)                                              open(exec.fifo)…
    `start` opens exec.fifo and reads ─────────────────────────────────▶ startContainer hooks
                                                                           execve(process.args)
    Any failure:  ◀───────────────────────────────────────────────────── ERROR <message>

For ``exec`` the same stages join the container's namespaces (``/proc/PID/ns/*``) instead of
making new ones, and the child execs right after READY; its sync pipe is close-on-exec, so
EOF after READY tells the parent the execve succeeded.

Invariants: the sync pipes reach no container process (close-on-exec, and every other
inherited fd above the preserved ones is made close-on-exec before execve); signal
dispositions the interpreter changed (SIGPIPE, SIGXFSZ, SIGINT) are reset before execve; if
the parent dies before GO, every stage reads EOF and exits, leaving at most a cgroup and a state
directory, both recorded in state.json for ``delete --force``.
"""

import os
import sys

from berth import fastjson
from berth.linux import mount as lm
from berth.linux import ns as lns
from berth.linux import prctl as lp
from berth.linux import proc as lproc

NS_ORDER = ("user", "ipc", "uts", "network", "pid", "time", "cgroup", "mount")


class Channel:
    """The init's end of the two sync pipes."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.buf = b""
        self.closed = False
        self.debugging = False

    def close(self) -> None:
        os.close(self.rfd)
        os.close(self.wfd)
        self.closed = True

    def send(self, tag: str, payload: str = "") -> None:
        data = (tag + (" " + payload if payload else "") + "\n").encode()
        while data:
            data = data[os.write(self.wfd, data):]

    def recv(self) -> tuple[str, str]:
        while b"\n" not in self.buf:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                os._exit(1)  # the parent is gone: nothing to report to
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        tag, _, payload = line.decode().partition(" ")
        return tag, payload

    def debug(self, msg: str) -> None:
        """A debug line for the runtime's log (sent only with --debug)."""
        if self.debugging:
            self.send("DEBUG", msg)

    def expect(self, tag: str) -> str:
        t, p = self.recv()
        if t != tag:
            raise RuntimeError(f"sync: expected {tag}, got {t}")
        return p


def main() -> None:
    rfd, wfd, console = (int(x) for x in sys.argv[1:4])
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    if console >= 0:
        os.set_inheritable(console, False)
    ch = Channel(rfd, wfd)
    try:
        plan = fastjson.loads(ch.expect("PLAN"))
        ch.debugging = bool(plan.get("debug"))
        # (the debug lines name the steps as runc's do, so that what greps runc's log works)
        ch.debug(f"nsexec container setup: stage 0 (pid {os.getpid()}) joins and makes "
                 "the namespaces")
        stage0(ch, plan, console)
    except BaseException as e:  # noqa: BLE001 - every failure goes to the parent as one line
        _report(ch, e)
        os._exit(1)


def _report(ch: Channel, e: BaseException) -> None:
    if isinstance(e, SystemExit):
        raise e
    if isinstance(e, OSError) and e.strerror:
        msg = e.strerror + (f": {e.filename}" if e.filename and str(e.filename) not in
                            e.strerror else "")
    else:
        msg = str(e) or type(e).__name__
    try:
        if ch.closed:  # after READY nobody listens: tell the container's stderr, as runc does
            os.write(2, f"berth-runtime: {msg}\n".encode())
        else:
            ch.send("ERROR", msg.replace("\n", " "))
    except OSError:
        pass


def stage0(ch: Channel, plan: dict, console: int) -> None:
    proc = plan["process"]
    if proc.get("oomScoreAdj") is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc["oomScoreAdj"]))
    preload(plan)
    # Open every namespace to join before joining any: after setns(mnt) host paths change.
    join = []
    for t in NS_ORDER:
        p = plan["join"].get(t)
        if p:
            try:
                join.append((t, os.open(p, os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as e:
                raise OSError(e.errno, f"open {t} namespace {p}: {e.strerror}") from None
    new = plan["new"]
    if plan.get("fifo"):
        # Opened (O_PATH) while still the host's root: from a user namespace the state
        # directory may be out of reach. pid 1 inherits it.
        plan["fifo_fd"] = os.open(plan["fifo"], os.O_PATH | os.O_CLOEXEC)
    for t, fd in join:
        try:
            lns.setns(fd, NAMESPACE_FLAGS[t])
        except OSError as e:
            raise OSError(e.errno, f"join {t} namespace: {e.strerror}") from None
        os.close(fd)
    if "user" in new and ("mount" in new or "mount" in plan["join"]):
        plan["mount_fds"] = bind_sources(plan)
    if "user" in new:
        lns.unshare(lns.CLONE_NEWUSER)
        ch.send("USERNS")
        ch.expect("MAPPED")
    if join and join[0][0] == "user" or "user" in new:
        # Become the user namespace's root, so the namespaces made next are owned by it.
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    flags = 0
    for t in new:
        if t not in ("user", "cgroup"):
            flags |= NAMESPACE_FLAGS[t]
    if flags:
        lns.unshare(flags)
    pid = os.fork()
    if pid == 0:
        try:
            pid1(ch, plan, console)
        except BaseException as e:  # noqa: BLE001
            _report(ch, e)
        os._exit(127)
    ch.send("PID", str(pid))
    if not plan.get("stay"):
        os._exit(0)
    # We were put in the container's cgroup so pid 1 would inherit it; waiting in the
    # foreground, we go back to the runtime's own cgroups, out of the container's counts.
    for d in (plan.get("home") or {}).values():
        try:
            fd = os.open(d + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        except OSError:
            pass
    # In the foreground the runtime's command waits for us; we wait for pid 1 and pass on its
    # status (128+N for a death by signal N). Signals are the command's to forward, not ours.
    import _signal

    for s in (1, 2, 3, 15):
        _signal.signal(s, _signal.SIG_IGN)
    ch.close()
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(255)
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


def bind_sources(plan: dict) -> dict[str, int]:
    """Detached copies (open_tree) of every bind mount's source, made while we are still the
    host's root: in the new user namespace a source the mapped root cannot reach (a 0700
    directory of the host) could not be bound. berth.runtime.rootfs attaches them in place.
    Keyed by the mount's index (a string: the plan travels as JSON)."""
    from berth.runtime import spec as ospec

    out = {}
    for i, m in enumerate((plan.get("config") or {}).get("mounts") or ()):
        flags, _p, _d, _r = ospec.mount_flags(m.get("options") or [])
        if not (flags & lm.MS_BIND or m.get("type") == "bind"):
            continue
        src = m.get("source") or ""
        if not src.startswith("/"):
            src = os.path.join(plan["bundle"], src)
        how = lm.OPEN_TREE_CLONE | lm.OPEN_TREE_CLOEXEC
        if flags & lm.MS_REC:
            how |= lm.AT_RECURSIVE
        try:
            out[str(i)] = lm.open_tree(src, how)
        except OSError as e:
            raise OSError(e.errno, f"mounts[{i}] {m['destination']}: bind source {src}: "
                                   f"{e.strerror.split(': ', 1)[-1]}") from None
    return out


NAMESPACE_FLAGS = {"pid": lns.CLONE_NEWPID, "network": lns.CLONE_NEWNET,
                   "mount": lns.CLONE_NEWNS, "ipc": lns.CLONE_NEWIPC, "uts": lns.CLONE_NEWUTS,
                   "user": lns.CLONE_NEWUSER, "cgroup": lns.CLONE_NEWCGROUP,
                   "time": lns.CLONE_NEWTIME}


def pid1(ch: Channel, plan: dict, console: int) -> None:
    plan["state"] = ch.expect("GO")
    ch.debug(f"child process in init(): the container's first process (pid {os.getpid()} "
             "in its pid namespace)")
    if "cgroup" in plan["new"]:
        # Only now, inside the container's cgroup, so that it becomes the namespace's root.
        lns.unshare(lns.CLONE_NEWCGROUP)
    proc = plan["process"]
    cfg = plan.get("config") or {}
    exec_mode = plan["mode"] == "exec"
    fifo = -1
    rf = None
    if not exec_mode:
        from berth.runtime.rootfs import Rootfs

        if cfg.get("hostname") is not None and "uts" in plan["new"]:
            lns.sethostname(cfg["hostname"])
        if cfg.get("domainname") is not None and "uts" in plan["new"]:
            lns.setdomainname(cfg["domainname"])
        fifo = plan["fifo_fd"]
        rf = Rootfs(plan)
        # A mount namespace joined by path is set up as a new one is (runc does the same).
        mntns = "mount" in plan["new"] or "mount" in plan["join"]
        if mntns:
            rf.prepare()
        hooks = cfg.get("hooks") or {}
        if hooks.get("createRuntime") or hooks.get("prestart"):
            ch.send("HOOKS")
            ch.expect("HOOKED")
        for i, h in enumerate(hooks.get("createContainer") or ()):
            from berth.runtime import hooks as rh

            rh.run("createContainer", h, plan["state"], i)
        if mntns:
            rf.pivot()
            rf.finalize()
        else:
            # Without a mount namespace nothing is mounted (runc would mount in the host's
            # namespace and leave it there); the rootfs may have no /proc to reopen the fifo
            # through, so our fd table is reached through the host's, opened now.
            fds = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            plan["fd_dir"] = fds
            os.chroot(plan["rootfs"])
            os.chdir("/")
    else:
        # Not every namespace changes the root: the container's mount ns does.
        os.chdir("/")
    if proc.get("terminal"):
        setup_console(proc, console, bind_console=not exec_mode)
    elif console >= 0:
        os.close(console)
    env = list(proc.get("env") or [])
    path = lookup(proc["args"][0], env, proc.get("cwd") or "/")
    finish_process(proc, plan, env)
    if exec_mode:
        ch.debug(f"setns_init: about to exec {path}")
        ch.send("READY")
        exec_process(path, proc, env, plan)
    ch.debug("init: closing the pipe to signal completion")
    ch.send("READY")
    ch.close()
    fds = plan.get("fd_dir")
    if fds is not None:
        wfd = os.open(str(fifo), os.O_WRONLY | os.O_CLOEXEC, dir_fd=fds)
        os.close(fds)
    else:
        wfd = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(wfd, b"0")
    os.close(wfd)
    os.close(fifo)
    if late_seccomp := plan.get("late_seccomp"):
        load_seccomp(late_seccomp)
    for i, h in enumerate((cfg.get("hooks") or {}).get("startContainer") or ()):
        from berth.runtime import hooks as rh

        rh.run("startContainer", h, plan["state"], i)
    exec_process(path, proc, env, plan)


def preload(plan: dict) -> None:
    """Import now what is used after setns(mnt) or pivot_root, when host files are out of reach."""
    proc = plan["process"]
    # The init's own start is the longest leg of `run` (measured: the command has sent the
    # plan before the init can read it), so it imports only what this plan needs.
    if plan["mode"] == "create":
        import berth.runtime.rootfs  # noqa: F401
    if proc.get("rlimits"):
        import resource  # noqa: F401

        from berth.runtime import spec  # noqa: F401
    if plan.get("early_seccomp") or plan.get("late_seccomp"):
        from berth.linux import seccomp
        from berth.runtime import enosys  # noqa: F401

        seccomp.lib()
    if proc.get("terminal"):
        import socket  # noqa: F401
    hk = (plan.get("config") or {}).get("hooks") or {}
    if hk.get("startContainer") or hk.get("createContainer"):
        from berth.runtime import hooks  # noqa: F401


def setup_console(proc: dict, console: int, bind_console: bool) -> None:
    if console < 0:
        raise OSError(22, "process.terminal is set but no --console-socket was given")
    import socket

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    lproc.unlockpt(master)
    slave_path = f"/dev/pts/{lproc.ptsname(master)}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    size = proc.get("consoleSize")
    if size:
        lproc.set_winsize(slave, size.get("height", 0), size.get("width", 0))
    sock = socket.socket(fileno=console)
    try:
        socket.send_fds(sock, [slave_path.encode()], [master])
    finally:
        sock.close()
    os.close(master)
    if bind_console:
        try:
            fd = os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            os.close(fd)
            lm.mount(slave_path, "/dev/console", None, lm.MS_BIND)
        except OSError:
            pass  # a read-only /dev: the console node is a convenience only
    os.setsid()
    lproc.set_controlling_tty(slave)
    for i in (0, 1, 2):
        os.dup2(slave, i)
    if slave > 2:
        os.close(slave)


def _env_get(env: list[str], key: str) -> str | None:
    k = key + "="
    for e in reversed(env):
        if e.startswith(k):
            return e[len(k):]
    return None


def lookup(arg0: str, env: list[str], cwd: str) -> str:
    """The executable ``arg0`` names, searched in the process's PATH as execvp would."""
    # As Go's exec.LookPath, which runc uses: an x bit in the mode is what counts, and a file
    # that exists without one is "permission denied" (docker maps that text to exit 126).
    if "/" in arg0:
        p = arg0 if arg0.startswith("/") else os.path.join(cwd, arg0)
        try:
            mode = os.stat(p).st_mode
        except OSError as e:
            raise OSError(e.errno, f'exec: "{arg0}": stat {arg0}: '
                                   f"{e.strerror.lower()}") from None
        if _executable(mode):
            return p
        raise OSError(13, f'exec: "{arg0}": permission denied')
    path = _env_get(env, "PATH")
    if path is None:
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for d in path.split(":"):
        p = os.path.join(d or ".", arg0)
        try:
            if _executable(os.stat(p).st_mode):
                return p
        except OSError:
            continue
    raise OSError(2, f'exec: "{arg0}": executable file not found in $PATH')


def _executable(mode: int) -> bool:
    return mode & 0o170000 != 0o040000 and mode & 0o111 != 0


def _home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                a = line.rstrip("\n").split(":")
                if len(a) >= 6 and a[2] == str(uid):
                    return a[5] or "/"
    except OSError:
        pass
    return "/"


def finish_process(proc: dict, plan: dict, env: list[str]) -> None:
    """rlimits, seccomp (early), bounding set, user, cwd, capabilities, no_new_privs, umask."""
    rl = proc.get("rlimits")
    if rl:
        import resource

        from berth.runtime.spec import RLIMITS

        inf = resource.RLIM_INFINITY
        for r in rl:
            soft = inf if r["soft"] >= (1 << 63) - 1 else r["soft"]
            hard = inf if r["hard"] >= (1 << 63) - 1 else r["hard"]
            try:
                resource.setrlimit(RLIMITS[r["type"]], (soft, hard))
            except (OSError, ValueError) as e:
                raise OSError(getattr(e, "errno", 22) or 22,
                              f"setrlimit {r['type']}: {e}") from None
    home = _home(user_uid(proc)) if _env_get(env, "HOME") is None else None
    if proc.get("apparmorProfile"):
        exec_attr("apparmor", "exec " + proc["apparmorProfile"], "apparmor profile")
    if proc.get("selinuxLabel"):
        exec_attr("selinux", proc["selinuxLabel"], "selinux label")
    # Before any filter: what comes after a seccomp load is limited to the syscalls runc makes
    # there too (a profile without close_range, as runtime-tools' and older Docker's, works).
    ready_fds_and_signals(plan)
    if plan.get("early_seccomp"):
        load_seccomp(plan["early_seccomp"])
    caps = proc.get("capabilities")
    masks = None
    if caps is not None:
        masks = {k: _mask(caps.get(k)) for k in ("bounding", "effective", "permitted",
                                                 "inheritable", "ambient")}
        last = lp.last_cap()
        for c in range(last + 1):
            if not masks["bounding"] & (1 << c):
                lp.prctl(lp.PR_CAPBSET_DROP, c)
    user = proc.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if uid != 0:
        stdio_to_user(uid)
    lp.prctl(lp.PR_SET_KEEPCAPS, 1)
    groups = user.get("additionalGids")
    if groups is not None or not plan.get("userns"):
        try:
            os.setgroups(groups or [])
        except PermissionError:
            if groups:
                raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    cwd = proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise OSError(e.errno, f"chdir to cwd ({cwd!r}) set in config.json failed: "
                               f"{e.strerror}") from None
    lp.prctl(lp.PR_SET_KEEPCAPS, 0)
    if masks is not None:
        lp.capset(masks["effective"], masks["permitted"], masks["inheritable"])
        lp.prctl(lp.PR_CAP_AMBIENT, lp.PR_CAP_AMBIENT_CLEAR_ALL)
        for c in range(64):
            if masks["ambient"] & (1 << c):
                try:
                    lp.prctl(lp.PR_CAP_AMBIENT, lp.PR_CAP_AMBIENT_RAISE, c)
                except OSError:
                    pass  # not in permitted+inheritable: the kernel refuses, as with runc
    if proc.get("noNewPrivileges"):
        lp.prctl(lp.PR_SET_NO_NEW_PRIVS, 1)
    os.umask(user.get("umask", 0o022) if user.get("umask") is not None else 0o022)
    if home is not None:
        env.append("HOME=" + home)


def exec_attr(lsm: str, value: str, what: str) -> None:
    """Ask the LSM to move the process into ``value`` at its next execve, as runc does (by
    /proc/self/attr/<lsm>/exec, or the older shared /proc/self/attr/exec). A host without
    that LSM refuses the write: the container is then not started unconfined."""
    for path in (f"/proc/self/attr/{lsm}/exec", "/proc/self/attr/exec"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise OSError(e.errno, f"unable to apply {what}: open {path}: {e.strerror}") from None
        try:
            os.write(fd, value.encode())
            return
        except OSError as e:
            raise OSError(e.errno, f"unable to apply {what}: write {path}: "
                                   f"{e.strerror.lower()}") from None
        finally:
            os.close(fd)
    raise OSError(2, f"unable to apply {what}: /proc/self/attr/exec is missing")


def user_uid(proc: dict) -> int:
    return (proc.get("user") or {}).get("uid", 0)


def stdio_to_user(uid: int) -> None:
    """Give the process's stdio (a pty made for it, pipes made by the caller) to its user, so
    that it can use its own terminal and reopen /proc/self/fd/N, as runc does: only the
    owner changes; /dev/null and what we may not change are left alone."""
    try:
        null = os.stat("/dev/null").st_rdev
    except OSError:
        null = -1
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
            if st.st_uid == uid or (st.st_rdev and st.st_rdev == null):
                continue
            os.fchown(fd, uid, st.st_gid)
        except OSError as e:
            if e.errno not in (22, 1, 30, 9):  # EINVAL/EPERM: unmapped; EROFS; EBADF: closed
                raise


def _mask(names: list[str] | None) -> int:
    m = 0
    for n in names or ():
        c = lp.CAPS.get(n)
        if c is not None:
            m |= 1 << c
    return m


def load_seccomp(sc: dict) -> None:
    """Build and load linux.seccomp with libseccomp; an action it cannot honour is an error."""
    from berth.linux import seccomp as ls

    def action(name: str, ret: int | None) -> int:
        if name == "SCMP_ACT_ERRNO":
            return ls.SCMP_ACT_ERRNO(1 if ret is None else ret)
        if name == "SCMP_ACT_TRACE":
            return ls.SCMP_ACT_TRACE(1 if ret is None else ret)
        return {"SCMP_ACT_KILL": ls.SCMP_ACT_KILL_THREAD,
                "SCMP_ACT_KILL_THREAD": ls.SCMP_ACT_KILL_THREAD,
                "SCMP_ACT_KILL_PROCESS": ls.SCMP_ACT_KILL_PROCESS,
                "SCMP_ACT_TRAP": ls.SCMP_ACT_TRAP, "SCMP_ACT_ALLOW": ls.SCMP_ACT_ALLOW,
                "SCMP_ACT_LOG": ls.SCMP_ACT_LOG}[name]

    default = action(sc["defaultAction"], sc.get("defaultErrnoRet"))
    f = ls.Filter(default)
    try:
        for a in sc.get("architectures") or ():
            f.add_arch(ls.ARCHES[a])
        f.set_attr(ls.SCMP_FLTATR_CTL_NNP, 0)
        flags = 0
        for fl in sc.get("flags") or ():
            if fl == "SECCOMP_FILTER_FLAG_LOG":
                flags |= ls.SECCOMP_FILTER_FLAG_LOG
            elif fl == "SECCOMP_FILTER_FLAG_SPEC_ALLOW":
                flags |= ls.SECCOMP_FILTER_FLAG_SPEC_ALLOW
            elif fl == "SECCOMP_FILTER_FLAG_TSYNC":
                flags |= ls.SECCOMP_FILTER_FLAG_TSYNC
        ops = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
               "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
        for rule in sc.get("syscalls") or ():
            act = action(rule["action"], rule.get("errnoRet"))
            if act == default:
                continue  # libseccomp refuses a rule that repeats the default
            conds = [(a["index"], ops[a["op"]], a["value"], a.get("valueTwo", 0))
                     for a in rule.get("args") or ()]
            counts: dict[int, int] = {}
            for c in conds:
                counts[c[0]] = counts.get(c[0], 0) + 1
            # As runc: several conditions on one argument are alternatives (one rule each);
            # conditions on distinct arguments all hold at once (one rule).
            groups = [[c] for c in conds] if any(n > 1 for n in counts.values()) else [conds]
            for name in rule["names"]:
                nr = ls.resolve(name)
                if nr < 0:
                    continue  # unknown to this libseccomp/arch: runc skips it too
                for g in groups:
                    f.add_rule(act, nr, g)
        program = f.export_bpf()
    finally:
        f.release()
    from berth.runtime import enosys

    if enosys.needed(sc):
        # syscalls newer than the profile get ENOSYS, not its default (runc's -ENOSYS stub)
        tokens = [ls.ARCHES[a] for a in sc.get("architectures") or ()] or [ls.native_arch()]
        names = [n for rule in sc.get("syscalls") or () for n in rule["names"]]
        program = enosys.stub(enosys.largest(names, tokens, ls.resolve_arch)) + program
    ls.load_program(program, flags)


def ready_fds_and_signals(plan: dict) -> None:
    """What execve must find: every inherited fd above the preserved ones close-on-exec (fds
    opened after this are close-on-exec already), and the signal dispositions the interpreter
    changed reset (its SIGINT handler, SIGPIPE and SIGXFSZ ignored)."""
    import _signal

    for s in (2, 13, 25):
        _signal.signal(s, _signal.SIG_DFL)
    lproc.close_range(3 + plan.get("preserve_fds", 0), 0xFFFFFFFF, lproc.CLOSE_RANGE_CLOEXEC)
    for fd in range(3, 3 + plan.get("preserve_fds", 0)):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass


def exec_process(path: str, proc: dict, env: list[str], plan: dict) -> None:
    envd = {}
    for e in env:
        k, _, v = e.partition("=")
        envd[k] = v
    try:
        os.execve(path, proc["args"], envd)
    except OSError as e:
        raise OSError(e.errno, f'exec: "{proc["args"][0]}": {e.strerror}') from None
