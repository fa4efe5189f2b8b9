"""The runtime's library API: what each runc command does, callable in-process.

    create(root, id, bundle, console_socket=None, pid_file=None, ...)  -> pid of the init
    start(root, id)           run(root, id, bundle, ...) -> exit status
    state(root, id) -> dict   kill(root, id, sig, all=False)   delete(root, id, force=False)
    exec_(root, id, process, ...)   ps(root, id)   list_(root)   pause / resume
    update(root, id, resources)     stats(root, id)   oom_watch(root, id)

``create`` validates everything before it makes anything; then the order is fixed so that a
kill -9 at any point leaves only what ``delete --force`` removes: the state directory with a
"creating" state.json naming the cgroup paths comes first, the cgroups next, the init last
(its processes are in the cgroup before they do anything, and exit on EOF if we die).
The init itself is a fresh exec (berth.runtime.init); its sync protocol is drawn there.
"""

import os
import time

from berth import atomic, fastjson
from berth.runtime import cgroups, devices, spec
from berth.runtime import state as st_mod
from berth.runtime.errors import (
    BadState,
    CgroupError,
    ContainerExists,
    InitFailed,
    InvalidArgument,
    InvalidConfig,
    NoSuchContainer,
)
from berth.runtime.spawn import Init

OCI_VERSION = "1.1.0"

SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
           "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
           "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20,
           "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26,
           "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31}

warn = None  # set by the CLI: a callable(str) for warnings (hooks that failed after start)
debug = None  # set by the CLI with --debug: a callable(str) for debug lines


def parse_signal(s: str) -> int:
    u = s.upper()
    if u.isdigit():
        # any number, as runc takes it: 0 checks the process exists, and one the kernel
        # does not know fails when it is sent
        return int(u)
    else:
        u = u[3:] if u.startswith("SIG") else u
        if u in SIGNALS:
            return SIGNALS[u]
        if u.startswith("RTMIN") or u.startswith("RTMAX"):
            off = int(u[6:] or 0) if len(u) > 5 else 0
            return 34 + off if u.startswith("RTMIN") else 64 - off
    raise InvalidArgument(f"unknown signal {s!r}")


def _now() -> str:
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + \
        f".{t % 10**9:09d}Z"


def _write_pid_file(path: str, pid: int) -> None:
    try:
        atomic.write_text(os.path.abspath(path), str(pid), 0o644, sync=False)
    except OSError as e:
        raise InvalidArgument(f"--pid-file {path}: {e.strerror.lower()}") from None


def _spec_state(st: dict, status: str) -> dict:
    out = {"ociVersion": OCI_VERSION, "id": st["id"],
           "pid": st.get("pid", 0) if status != "stopped" else 0, "status": status,
           "bundle": st.get("bundle", ""), "rootfs": st.get("rootfs", ""),
           "created": st.get("created", ""), "owner": ""}
    ann = (st.get("config") or {}).get("annotations")
    if ann:
        out["annotations"] = ann
    return out


def _hook_state(st: dict, status: str) -> str:
    s = {"ociVersion": OCI_VERSION, "id": st["id"], "status": status, "pid": st.get("pid", 0),
         "bundle": st.get("bundle", "")}
    ann = (st.get("config") or {}).get("annotations")
    if ann:
        s["annotations"] = ann
    return fastjson.dumps(s)


def _run_hooks(st: dict, kind: str, status: str, fatal: bool = True) -> None:
    from berth.runtime import hooks

    hs = ((st.get("config") or {}).get("hooks") or {}).get(kind) or ()
    for i, h in enumerate(hs):
        try:
            hooks.run(kind, h, _hook_state(st, status), i)
        except InitFailed as e:
            if fatal:
                raise
            if warn:
                warn(str(e))


def _userns_maps(pid: int, linux: dict) -> None:
    for key, f in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                       for m in linux.get(key) or ())
        try:
            fd = os.open(f"/proc/{pid}/{f}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise InvalidConfig(f"linux.{key}: the kernel refused the mapping: "
                                f"{e.strerror}") from e


def _seccomp_plan(cfg: dict, proc: dict) -> dict:
    sc = (cfg.get("linux") or {}).get("seccomp")
    if not sc:
        return {}
    # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before the caps are
    # dropped; with it, load as late as possible (after the exec fifo), as runc does.
    return {"late_seccomp": sc} if proc.get("noNewPrivileges") else {"early_seccomp": sc}


def _connect_console(path: str) -> int:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise InvalidArgument(f"--console-socket {path}: {e.strerror}") from e
    return s.detach()


def _console_init(console_socket: str | None) -> Init:
    """An init that sends its pty master to ``console_socket``, or, in the foreground without
    one, to us (berth.runtime.tty proxies it as runc does)."""
    if console_socket:
        return Init(_connect_console(console_socket))
    from berth.runtime import tty

    ours, theirs = tty.socketpair()
    try:
        init = Init(theirs)
    except BaseException:
        os.close(ours)
        raise
    init.tty_peer = ours
    return init


def _sized(proc: dict, init: Init) -> dict:
    """With our own terminal proxied, the pty starts at our terminal's size (set by the init
    before execve, so the process never sees a resize it did not cause)."""
    if init.tty_peer < 0 or proc.get("consoleSize"):
        return proc
    from berth.runtime import tty

    con = tty.host_console()
    if con < 0:
        return proc
    try:
        rows, cols = os.get_terminal_size(con)[::-1]
    except OSError:
        return proc
    return {**proc, "consoleSize": {"height": rows, "width": cols}}


def _foreground(init: Init, pid: int, start=None) -> int:
    """Wait for the container process in the foreground (``start`` lets it run), forwarding
    signals; with our own terminal, proxy it. Returns the exit status."""
    master = -1
    if init.tty_peer >= 0:
        from berth.runtime import tty

        try:
            master = tty.recv_master(init.tty_peer)
        except BaseException:
            init.close()
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            raise
    init.close()
    if master < 0:
        fwd = _forward_signals(pid)
        try:
            if start:
                start()
            return init.reap()
        finally:
            _restore_signals(fwd)
    from berth.runtime import tty

    con = tty.host_console()
    size = lambda *_: tty.copy_size(con, master) if con >= 0 else None  # noqa: E731
    fwd = _forward_signals(pid, {28: size})
    old = tty.make_raw(con) if con >= 0 else None
    try:
        size()
        if start:
            start()
        tty.proxy(master, init.pid)
        return init.reap()
    finally:
        if old is not None:
            tty.restore(con, old)
        _restore_signals(fwd)
        os.close(master)


def create(root: str, cid: str, bundle: str, console_socket: str | None = None,
           pid_file: str | None = None, no_pivot: bool = False, preserve_fds: int = 0,
           _init: Init | None = None) -> int:
    """Create container ``cid`` from ``bundle``; returns the host pid of its init, which waits
    for ``start``. ``_init`` is an init the caller started early (see berth.runtime.spawn)."""
    st, init = _create(root, cid, bundle, console_socket, pid_file, no_pivot, preserve_fds,
                       False, _init)
    init.close()
    return st["pid"]


def _create(root, cid, bundle, console_socket, pid_file, no_pivot, preserve_fds, stay,
            init=None):
    try:
        return _create2(root, cid, bundle, console_socket, pid_file, no_pivot, preserve_fds,
                        stay, init)
    except BaseException:
        if init is not None:
            init.abort()
        raise


def _create2(root, cid, bundle, console_socket, pid_file, no_pivot, preserve_fds, stay, init):
    st_mod.check_id(cid)
    bundle = os.path.abspath(bundle or ".")
    cfg = spec.load(bundle)
    proc = cfg["process"]
    linux = cfg.get("linux") or {}
    rootfs = cfg["root"]["path"]
    rootfs = os.path.realpath(rootfs if rootfs.startswith("/") else os.path.join(bundle, rootfs))
    if not os.path.isdir(rootfs):
        raise InvalidConfig(f"root.path: rootfs {rootfs} is not a directory")
    join, new = {}, []
    for i, n in enumerate(linux.get("namespaces") or ()):
        if n.get("path"):
            _check_ns_path(f"linux.namespaces[{i}].path", n["type"], n["path"])
            join[n["type"]] = n["path"]
        else:
            new.append(n["type"])
    if proc.get("terminal") and not console_socket and not stay:
        raise InvalidArgument("process.terminal is set: --console-socket is required "
                              "unless it runs in the foreground")
    dev_rules = devices.evaluate((linux.get("resources") or {}).get("devices"))
    fs = cgroups.CgroupFS()
    cg = cgroups.manager(linux.get("cgroupsPath") or cid, fs)
    if cg.version == 1 and (linux.get("resources") or {}).get("unified"):
        raise InvalidConfig("linux.resources.unified: invalid configuration: this host's "
                            "cgroups are v1, and unified resources need cgroup v2")
    # As runc 1.1: a cgroup that already holds processes is used with a warning; a frozen
    # one would freeze the init half-way, so it is refused.
    if cg.exists():
        if warn and (n := len(cg.pids())):
            warn(f"container's cgroup is not empty: {n} process(es) found")
        if cg.frozen():
            raise CgroupError("container's cgroup unexpectedly frozen")
    if proc.get("terminal"):
        if init is not None:  # started before we knew it needs the console: start anew
            init.abort()
        init = _console_init(console_socket)
    elif init is None:
        init = Init()  # its interpreter boots while we make the state and cgroups
    home = cgroups.V1Manager.for_path("", fs).paths if isinstance(
        cg, cgroups.V1Manager) else cgroups.V2Manager.for_path("", fs).paths

    # Validation is over: from here on, everything made is recorded before it is made.
    sdir = os.path.join(root, cid)
    try:
        os.makedirs(root, 0o711, exist_ok=True)
        os.mkdir(sdir, 0o711)
    except FileExistsError:
        raise ContainerExists(f"container with id {cid} already exists") from None
    except OSError as e:
        raise InvalidArgument(f"cannot make state directory {sdir}: {e.strerror}") from e
    me = st_mod.proc_start_time(os.getpid())
    st = {"id": cid, "bundle": bundle, "rootfs": rootfs, "created": _now(),
          "creator": os.getpid(), "creator_start": me[0] if me else 0,
          "cgroup": cg.to_state(), "config": cfg, "no_pivot": no_pivot}
    pid1 = 0
    try:
        st_mod.save(root, cid, st)
        fifo = os.path.join(sdir, "exec.fifo")
        old = os.umask(0)
        try:
            os.mkfifo(fifo, 0o622)
        finally:
            os.umask(old)
        cg.create()
        res = linux.get("resources") or {}
        cg.set(res)
        cg.set_devices(dev_rules)
        # Stage 0 goes into the cgroup now, while its interpreter is still starting: pid 1
        # inherits it by fork, and no migration (slow on v1) sits on the path to exec.
        cg.apply(init.pid)
        plan = {"mode": "create", "config": cfg, "process": _sized(proc, init),
                "rootfs": rootfs,
                "bundle": bundle, "fifo": fifo, "join": join, "new": new, "stay": stay,
                "cgroup": cg.to_state(), "cgroupns": "cgroup" in new, "no_pivot": no_pivot,
                "preserve_fds": preserve_fds, "userns": "user" in new or "user" in join,
                "home": home}
        plan.update(_seccomp_plan(cfg, proc))
        plan["debug"] = debug is not None
        init.send("PLAN", fastjson.dumps(plan))
        while True:
            tag, payload = init.recv()
            if tag == "DEBUG":
                debug(payload)
            elif tag == "USERNS":
                _userns_maps(init.pid, linux)
                init.send("MAPPED")
            elif tag == "PID":
                pid1 = int(payload)
                t = st_mod.proc_start_time(pid1)
                st["pid"], st["start_time"] = pid1, t[0] if t else 0
                st_mod.save(root, cid, st)
                if not stay:
                    init.reap()
                init.send("GO", _hook_state(st, "creating"))
            elif tag == "HOOKS":
                _run_hooks(st, "prestart", "created")
                _run_hooks(st, "createRuntime", "created")
                init.send("HOOKED")
            elif tag == "READY":
                break
            elif tag == "ERROR":
                raise InitFailed(payload)
            else:
                raise InitFailed("container init exited without reporting why")
        if pid_file:
            _write_pid_file(pid_file, pid1)
    except BaseException:
        init.close()
        if pid1:
            _kill_wait(pid1, st)
        init.abort()
        _destroy(root, cid, st, cg, run_poststop=False)
        raise
    return st, init


def _check_ns_path(field: str, typ: str, path: str) -> None:
    """A namespace to join must be a namespace of its type (runtime-spec: a path of another
    type is an error), found out before anything is made."""
    from berth.linux import ns as lns

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise InvalidConfig(f"{field}: {typ} namespace {path}: {e.strerror}") from None
    try:
        got = lns.ns_type(fd)
    except OSError:
        raise InvalidConfig(f"{field}: {path} is not a namespace") from None
    finally:
        os.close(fd)
    if got != spec.NAMESPACES[typ]:
        name = next((k for k, v in spec.NAMESPACES.items() if v == got), hex(got))
        raise InvalidConfig(f"{field}: {path} is a {name} namespace, not {typ}")


def _kill_wait(pid: int, st: dict, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while st_mod.alive(st) and time.monotonic() < deadline:
        time.sleep(0.001)


def _destroy(root: str, cid: str, st: dict, cg, run_poststop: bool = True) -> None:
    if cg is not None:
        _kill_cgroup(cg)
        cg.destroy()
    if run_poststop and st.get("config"):
        _run_hooks(st, "poststop", "stopped", fatal=False)
    sdir = os.path.join(root, cid)
    for name in ("exec.fifo", "state.json"):
        try:
            os.unlink(os.path.join(sdir, name))
        except FileNotFoundError:
            pass
    try:
        for name in os.listdir(sdir):
            os.unlink(os.path.join(sdir, name))
        os.rmdir(sdir)
    except FileNotFoundError:
        pass


def _kill_cgroup(cg, timeout: float = 10.0) -> None:
    if not cg.exists():
        return
    pids = cg.pids()
    if not pids:
        return
    try:
        cg.kill_all(9)
    except CgroupError:
        for p in pids:
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while cg.pids() and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _load(root: str, cid: str) -> tuple[dict, object, str]:
    st = st_mod.load(root, cid)
    cg = cgroups.from_state(st["cgroup"]) if st.get("cgroup") else None
    return st, cg, st_mod.status(root, st, cg)


def start(root: str, cid: str) -> None:
    st, cg, status = _load(root, cid)
    if status != "created":
        if status in ("running", "paused"):
            raise BadState(f"cannot start an already running container {cid}")
        raise BadState(f"cannot start a container that has stopped: {cid}")
    fifo = os.path.join(root, cid, "exec.fifo")
    import select

    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        while True:
            if p.poll(20):
                try:
                    if os.read(fd, 1):
                        break
                except BlockingIOError:
                    continue
            if not st_mod.alive(st):
                raise BadState(f"container {cid}'s init exited before start")
    finally:
        os.close(fd)
    os.unlink(fifo)
    _run_hooks(st, "poststart", "running", fatal=False)


def run(root: str, cid: str, bundle: str, console_socket: str | None = None,
        pid_file: str | None = None, detach: bool = False, no_pivot: bool = False,
        preserve_fds: int = 0, keep: bool = False, _init: Init | None = None) -> int:
    """create + start; in the foreground wait for the process and return its exit status
    (128+N after a death by signal N), then delete the container unless ``keep``."""
    if detach:
        create(root, cid, bundle, console_socket, pid_file, no_pivot, preserve_fds, _init)
        try:
            start(root, cid)
        except BaseException:
            delete(root, cid, force=True)
            raise
        return 0
    st, init = _create(root, cid, bundle, console_socket, pid_file, no_pivot, preserve_fds,
                       True, _init)
    try:
        code = _foreground(init, st["pid"], lambda: start(root, cid))
    finally:
        init.close()
        if not init.reaped:
            _kill_wait(st["pid"], st)
            init.reap()
        if not keep:
            delete(root, cid, force=True)
    return code


_FORWARDED = (1, 2, 3, 10, 12, 15, 28)


def _forward_signals(pid: int, own: dict | None = None) -> dict:
    """Pass the usual signals on to ``pid``; those in ``own`` go to their handler instead."""
    import _signal

    def fwd(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    own = own or {}
    return {s: _signal.signal(s, own.get(s, fwd)) for s in _FORWARDED}


def _restore_signals(old: dict) -> None:
    import _signal

    for s, h in old.items():
        _signal.signal(s, h)


def state(root: str, cid: str) -> dict:
    st, _cg, status = _load(root, cid)
    return _spec_state(st, status)


def kill(root: str, cid: str, sig: int = 15, all_: bool = False) -> None:
    st, cg, status = _load(root, cid)
    if all_ and cg is not None and status != "creating":
        # as runc: every process left in the cgroup, even once the init has exited
        if status == "stopped" and not cg.exists():
            return
        _signal_all(cg, sig)
        return
    if status in ("stopped", "creating"):
        raise BadState(f"container {cid} is not running")
    try:
        os.kill(st["pid"], sig)
    except ProcessLookupError:
        raise BadState(f"container {cid} is not running") from None
    except OSError as e:
        raise InvalidArgument(f"unable to signal init: {e.strerror}") from None
    if status == "paused" and sig == 9 and cg is not None:
        # a frozen v1 cgroup holds a SIGKILL until it thaws (runc thaws for SIGKILL only)
        cg.thaw()


def _signal_all(cg, sig: int) -> None:
    try:
        cg.kill_all(sig)
    except OSError as e:
        raise InvalidArgument(f"unable to signal the container's processes: "
                              f"{e.strerror}") from None


def delete(root: str, cid: str, force: bool = False) -> None:
    try:
        st, cg, status = _load(root, cid)
    except NoSuchContainer:
        if force:
            return
        raise
    if status in ("running", "paused") and not force:
        raise BadState(f"cannot delete container {cid} that is not stopped: {status}")
    if status == "creating" and not force:
        raise BadState(f"cannot delete container {cid} while it is being created")
    if status == "paused" and cg is not None:
        cg.thaw()
    if status in ("created", "running", "paused") and st.get("pid"):
        _kill_wait(st["pid"], st)
    _destroy(root, cid, st, cg)


def exec_(root: str, cid: str, process: dict, console_socket: str | None = None,
          pid_file: str | None = None, detach: bool = False, preserve_fds: int = 0,
          _init: Init | None = None, sub_cgroups: list[str] | None = None,
          ignore_paused: bool = False) -> int:
    """Run ``process`` in container ``cid``; returns its exit status, or its pid if detached.
    ``sub_cgroups`` are `exec --cgroup` values; ``ignore_paused`` lets it into a paused
    container (it runs once the container is resumed)."""
    try:
        return _exec(root, cid, process, console_socket, pid_file, detach, preserve_fds, _init,
                     sub_cgroups, ignore_paused)
    except BaseException:
        if _init is not None:
            _init.abort()
        raise


def _exec(root, cid, process, console_socket, pid_file, detach, preserve_fds, init,
          sub_cgroups=None, ignore_paused=False):
    st, cg, status = _load(root, cid)
    if status not in ("running", "created") and not (status == "paused" and ignore_paused):
        if status == "paused":
            raise BadState(f"cannot exec in a paused container {cid} "
                           "(use --ignore-paused to override)")
        raise BadState(f"cannot exec in a stopped container {cid}")
    paths = cg.sub_paths(cgroups.parse_sub_cgroups(sub_cgroups)) \
        if sub_cgroups and cg is not None else None
    spec.validate_process(process, "process.", exec_=True)
    if process.get("terminal") and not console_socket and detach:
        raise InvalidArgument("process.terminal is set: --console-socket is required "
                              "unless it runs in the foreground")
    cfg = st["config"]
    linux = cfg.get("linux") or {}
    pid = st["pid"]
    join = {}
    for n in linux.get("namespaces") or ():
        join[n["type"]] = f"/proc/{pid}/ns/{spec.NS_PROC_NAME[n['type']]}"
    if process.get("terminal"):
        if init is not None:
            init.abort()
        init = _console_init(console_socket)
    elif init is None:
        init = Init()
    child = 0
    try:
        home = {}
        if cg is not None:
            cg.join(init.pid, paths, init_pid=st["pid"])
            fs = cgroups.CgroupFS()
            home = (cgroups.V1Manager if cg.version == 1 else cgroups.V2Manager).for_path(
                "", fs).paths
        plan = {"mode": "exec", "process": _sized(process, init), "join": join, "new": [],
                "stay": not detach, "preserve_fds": preserve_fds,
                "userns": "user" in join, "home": home}
        plan.update(_seccomp_plan(cfg, process))
        if plan.get("late_seccomp"):
            plan["early_seccomp"] = plan.pop("late_seccomp")
        plan["debug"] = debug is not None
        init.send("PLAN", fastjson.dumps(plan))
        while True:
            tag, payload = init.recv()
            if tag == "DEBUG":
                debug(payload)
            elif tag == "PID":
                child = int(payload)
                if detach:
                    init.reap()
                init.send("GO")
            elif tag == "READY":
                continue
            elif tag == "ERROR":
                raise InitFailed(payload)
            elif tag == "EOF":
                break
        if not child:
            raise InitFailed("exec: the init exited without reporting why")
        if pid_file:
            _write_pid_file(pid_file, child)
    except BaseException:
        init.close()
        if child:
            try:
                os.kill(child, 9)
            except ProcessLookupError:
                pass
        init.abort()
        raise
    if detach:
        init.close()
        return child
    return _foreground(init, child)


def ps(root: str, cid: str) -> list[int]:
    st, cg, status = _load(root, cid)
    if cg is None:
        return [st["pid"]] if status != "stopped" else []
    return sorted(cg.pids())


def list_(root: str) -> list[dict]:
    out = []
    for cid in st_mod.list_ids(root):
        try:
            st, _cg, status = _load(root, cid)
        except (NoSuchContainer, InvalidArgument):
            continue
        out.append(_spec_state(st, status))
    return out


def pause(root: str, cid: str) -> None:
    _st, cg, status = _load(root, cid)
    if status != "running":
        raise BadState(f"container {cid} is not running: {status}")
    cg.freeze()


def resume(root: str, cid: str) -> None:
    _st, cg, status = _load(root, cid)
    if status != "paused":
        raise BadState(f"container {cid} is not paused: {status}")
    cg.thaw()


def update(root: str, cid: str, resources: dict) -> None:
    st, cg, status = _load(root, cid)
    if status == "stopped":
        raise BadState(f"container {cid} is not running")
    spec.validate_resources(resources, "resources.")
    dev_rules = devices.evaluate(resources["devices"], "resources.devices") \
        if "devices" in resources else None
    cg.set(resources)
    if dev_rules is not None:
        cg.set_devices(dev_rules)
    res = st["config"].setdefault("linux", {}).setdefault("resources", {})
    for k, v in resources.items():
        if isinstance(v, dict):
            res.setdefault(k, {}).update(v)
        else:
            res[k] = v
    st_mod.save(root, cid, st)


def oom_watch(root: str, cid: str):
    """A berth.runtime.cgroups.OomWatch for a container that is not stopped."""
    _st, cg, status = _load(root, cid)
    if status == "stopped" or cg is None:
        raise BadState(f"container with id {cid} is not running")
    return cg.oom_watch()


def stats(root: str, cid: str) -> dict:
    st, cg, status = _load(root, cid)
    if status == "stopped":
        raise BadState(f"container {cid} is not running")
    return cg.stats() if cg is not None else {}
