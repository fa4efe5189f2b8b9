"""Driving an OCI runtime through runc's command line, from a single-threaded process.

The shim calls::

    RUNTIME [--root R] [ARGS...] --log L --log-format json create --bundle B --pid-file P
                                                       [--console-socket S] ID
    ... start ID | kill [--all] ID SIG | delete [--force] ID | pause ID | resume ID | state ID
    ... exec --process F --detach --pid-file P [--console-socket S] ID

Any runtime with that command line works (Debian's runc, berth-runtime, crun). Each call is a
fresh ``posix_spawn`` with every signal back at its default (Python ignores SIGPIPE and SIGXFSZ,
and ignored signals would survive into the container's processes) and waits on a pidfd, so a
hung runtime is killed after ``timeout`` seconds instead of hanging the shim.

For ``create`` and ``exec`` the runtime's stdio is the container's (runc's detached
"pass-through" mode), so its error text would land in the container's output: errors are read
from the ``--log`` file instead (the last ``"level":"error"`` record written by this call), as
containerd does.

berth-runtime, the default, is also callable in-process (``RuntimeInProcess``, its library API
berth.runtime.container behind the same methods): no interpreter start per call (~12 ms each
here). The shim calls it only from its short-lived workers (berth.shim.work), which may do to
their own stdio and signal dispositions what a runtime process would have had: the container's
pipes on fds 0-2 (what the runtime's init inherits) and every signal at its default.
"""

import os
import select

from berth import fastjson
from berth.errors import FailedPrecondition, InvalidArgument

__all__ = ["RuntimeCLI", "RuntimeFailed", "RuntimeInProcess", "for_options", "which"]


class RuntimeFailed(FailedPrecondition):
    """The OCI runtime refused or failed a call; the message is the runtime's own."""

    def __init__(self, message: str, command: str = "", exit_code: int = -1) -> None:
        super().__init__(message)
        self.command = command
        self.exit_code = exit_code


class NoSuchRuntime(InvalidArgument):
    pass


# Signals that may be ignored or handled in the shim and must not be inherited as ignored.
_SIGNALS = tuple(s for s in range(1, 32) if s not in (9, 19))


def which(name: str) -> str:
    """The executable ``name`` resolved on PATH (or taken as a path when it has a slash)."""
    if "/" in name:
        if os.access(name, os.X_OK):
            return name
        raise NoSuchRuntime(f"runtime not executable: {name}")
    for d in os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:"
                            "/bin").split(":"):
        p = os.path.join(d or ".", name)
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            return p
    raise NoSuchRuntime(f"runtime not found on PATH: {name}")


def spawn(argv: list[str], stdio: tuple[int, int, int]) -> int:
    """posix_spawn ``argv`` with ``stdio`` as fds 0-2 and default signal dispositions."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)]
    return os.posix_spawn(argv[0], argv, os.environ, file_actions=actions,
                          setsigdef=_SIGNALS, setsigmask=())


def wait_pid(pid: int, timeout: float) -> int:
    """Wait for our child ``pid`` at most ``timeout`` s (then SIGKILL it); its wait status."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = -1
    if pidfd >= 0:
        try:
            p = select.poll()
            p.register(pidfd, select.POLLIN)
            if not p.poll(timeout * 1000):
                os.kill(pid, 9)
        finally:
            os.close(pidfd)
    return os.waitpid(pid, 0)[1]


class RuntimeCLI:
    """An OCI runtime binary with runc's command line."""

    def __init__(self, binary: str = "runc", root: str | None = None,
                 args: tuple[str, ...] = (), log: str | None = None,
                 timeout: float = 60.0) -> None:
        self.binary = which(binary)
        self.root = root
        self.log = log
        self.timeout = timeout
        pre = [self.binary]
        if root:
            pre += ["--root", root]
        pre += list(args)
        if log:
            pre += ["--log", log, "--log-format", "json"]
        self._argv = pre
        self._null = -1

    def _devnull(self) -> int:
        if self._null < 0:
            self._null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        return self._null

    def _log_offset(self) -> int:
        if not self.log:
            return 0
        try:
            return os.stat(self.log).st_size
        except FileNotFoundError:
            return 0

    def _log_error(self, offset: int) -> str:
        """The last error message the runtime logged after ``offset``."""
        if not self.log:
            return ""
        try:
            with open(self.log, "rb") as f:
                f.seek(offset)
                lines = f.read().splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            try:
                rec = fastjson.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("level") in ("error", "fatal"):
                return str(rec.get("msg", "")).strip()
        return ""

    def _call(self, cmd: str, args: list[str], stdio: tuple[int, int, int] | None = None,
              capture: bool = False) -> bytes:
        """Run one runtime command; its stdout when ``capture``; RuntimeFailed on failure."""
        argv = self._argv + [cmd] + args
        offset = self._log_offset()
        null = self._devnull()
        rfd = wfd = efd_r = efd_w = -1
        try:
            if stdio is None:
                efd_r, efd_w = os.pipe()
                if capture:
                    rfd, wfd = os.pipe()
                stdio = (null, wfd if capture else null, efd_w)
            pid = spawn(argv, stdio)
            out = b""
            if wfd >= 0:
                os.close(wfd)
                wfd = -1
                out = _read_all(rfd, self.timeout)
            status = wait_pid(pid, self.timeout)
            err = b""
            if efd_w >= 0:
                os.close(efd_w)
                efd_w = -1
                err = _read_all(efd_r, 1.0)
        finally:
            for fd in (rfd, wfd, efd_r, efd_w):
                if fd >= 0:
                    os.close(fd)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            msg = self._log_error(offset) or err.decode(errors="replace").strip()
            if not msg:
                msg = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
            raise RuntimeFailed(f"runtime {cmd} failed: {msg}", cmd, code)
        return out

    def create(self, cid: str, bundle: str, pid_file: str, stdio: tuple[int, int, int],
               console_socket: str | None = None) -> None:
        args = ["--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        self._call("create", args + [cid], stdio)

    def start(self, cid: str) -> None:
        self._call("start", [cid])

    def exec(self, cid: str, process_file: str, pid_file: str, stdio: tuple[int, int, int],
             console_socket: str | None = None) -> None:
        args = ["--process", process_file, "--detach", "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        self._call("exec", args + [cid], stdio)

    def kill(self, cid: str, signal: int, all: bool = False) -> None:
        self._call("kill", (["--all"] if all else []) + [cid, str(signal)])

    def delete(self, cid: str, force: bool = False) -> None:
        self._call("delete", (["--force"] if force else []) + [cid])

    def pause(self, cid: str) -> None:
        self._call("pause", [cid])

    def resume(self, cid: str) -> None:
        self._call("resume", [cid])

    def state(self, cid: str) -> dict:
        out = self._call("state", [cid], capture=True)
        try:
            st = fastjson.loads(out)
        except ValueError as e:
            raise RuntimeFailed(f"runtime state printed no JSON: {e}", "state") from None
        if not isinstance(st, dict):
            raise RuntimeFailed("runtime state printed no JSON object", "state")
        return st

    def close(self) -> None:
        if self._null >= 0:
            os.close(self._null)
            self._null = -1


def _read_all(fd: int, timeout: float) -> bytes:
    chunks = []
    p = select.poll()
    p.register(fd, select.POLLIN)
    while p.poll(timeout * 1000):
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


class RuntimeInProcess:
    """berth-runtime through its library API, with RuntimeCLI's methods and errors."""

    DEFAULT_ROOT = "/run/berth-runtime"

    def __init__(self, root: str | None = None) -> None:
        from berth.runtime import container

        self._c = container
        self.root = root or self.DEFAULT_ROOT

    def _call(self, cmd: str, fn, *args, stdio: tuple[int, int, int] | None = None, **kw):
        from berth.errors import BerthError

        saved = []
        try:
            if stdio is not None:
                # The runtime's init inherits our fds 0-2, as it inherits the CLI's.
                saved = [os.dup(i) for i in range(3)]
                for i, fd in enumerate(stdio):
                    os.dup2(fd, i)
            for sig in _SIGNALS:
                try:
                    signal_default(sig)
                except OSError:
                    pass
            return fn(self.root, *args, **kw)
        except BerthError as e:
            raise RuntimeFailed(f"runtime {cmd} failed: {e}", cmd, 1) from None
        finally:
            for i, fd in enumerate(saved):
                os.dup2(fd, i)
                os.close(fd)

    def create(self, cid: str, bundle: str, pid_file: str, stdio: tuple[int, int, int],
               console_socket: str | None = None) -> None:
        self._call("create", self._c.create, cid, bundle, console_socket=console_socket,
                   pid_file=pid_file, stdio=stdio)

    def start(self, cid: str) -> None:
        self._call("start", self._c.start, cid)

    def exec(self, cid: str, process_file: str, pid_file: str, stdio: tuple[int, int, int],
             console_socket: str | None = None) -> None:
        with open(process_file, "rb") as f:
            process = fastjson.loads(f.read())
        self._call("exec", self._c.exec_, cid, process, console_socket=console_socket,
                   pid_file=pid_file, detach=True, stdio=stdio)

    def kill(self, cid: str, signal: int, all: bool = False) -> None:
        self._call("kill", self._c.kill, cid, signal, all_=all)

    def delete(self, cid: str, force: bool = False) -> None:
        self._call("delete", self._c.delete, cid, force=force)

    def pause(self, cid: str) -> None:
        self._call("pause", self._c.pause, cid)

    def resume(self, cid: str) -> None:
        self._call("resume", self._c.resume, cid)

    def state(self, cid: str) -> dict:
        return self._call("state", self._c.state, cid)

    def close(self) -> None:
        pass


def signal_default(sig: int) -> None:
    import _signal

    _signal.signal(sig, _signal.SIG_DFL)


def in_process(runtime: str, args: tuple[str, ...]) -> bool:
    """Whether ``runtime`` is berth's own, callable in-process (it takes no extra arguments
    that only its command line would understand)."""
    if os.path.basename(runtime) != "berth-runtime" or args:
        return False
    try:
        import berth.runtime.container  # noqa: F401
    except ImportError:
        return False
    return True


def for_options(opts, log: str | None):
    """The runtime driver the shim's options ask for."""
    if opts.runtime_mode != "exec" and in_process(opts.runtime, opts.runtime_args):
        return RuntimeInProcess(opts.runtime_root)
    return RuntimeCLI(opts.runtime, opts.runtime_root, opts.runtime_args, log=log)
