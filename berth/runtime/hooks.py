"""OCI hooks: run one with the container's state on its stdin, bounded by its timeout.

Used both by the runtime's command (createRuntime, prestart, poststart, poststop: in the
runtime's namespaces) and by the container's init (createContainer before pivot_root,
startContainer just before exec). Stdlib only and light: no subprocess.

As runc: a hook's stdout and stderr are captured, not passed through, and show in the error
when it fails ("error running hook #0: exit status 1, stdout: ..., stderr: ...").
"""

import os
import select  # here, not in run(): the init calls run() after pivot_root
import time

from berth.runtime.errors import InitFailed


class HookFailed(InitFailed):
    pass


def _how(status: int) -> str:
    """What Go's exec.ExitError says, which runc's users match on."""
    if os.WIFSIGNALED(status):
        import _signal

        sig = os.WTERMSIG(status)
        name = (_signal.strsignal(sig) or f"signal {sig}").lower()
        return f"signal: {name}" + (" (core dumped)" if os.WCOREDUMP(status) else "")
    return f"exit status {os.WEXITSTATUS(status)}"


def run(kind: str, hook: dict, state_json: str, index: int = 0) -> None:
    """Run ``hook`` and wait for it; raise HookFailed on a non-zero exit or a timeout."""
    path = hook["path"]
    args = hook.get("args") or [path]
    env = {}
    for e in hook.get("env") or ():
        k, _, v = e.partition("=")
        env[k] = v
    what = f"error running hook #{index} ({kind} {path})"
    fds = [os.pipe() for _ in range(3)]  # stdin, stdout, stderr
    try:
        pid = os.posix_spawn(path, args, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, fds[0][0], 0), (os.POSIX_SPAWN_DUP2, fds[1][1], 1),
            (os.POSIX_SPAWN_DUP2, fds[2][1], 2)])
    except OSError as e:
        for r, w in fds:
            os.close(r)
            os.close(w)
        raise HookFailed(f"{what}: {e.strerror}") from e
    for fd in (fds[0][0], fds[1][1], fds[2][1]):
        os.close(fd)
    stdin, out_r, err_r = fds[0][1], fds[1][0], fds[2][0]
    try:
        os.set_blocking(stdin, False)
        os.write(stdin, state_json.encode())
    except OSError:
        pass  # a hook need not read its stdin (nor all of it)
    os.close(stdin)
    pidfd = os.pidfd_open(pid)
    timeout = hook.get("timeout")
    deadline = time.monotonic() + timeout if timeout else None
    got = {out_r: b"", err_r: b""}
    p = select.poll()
    for fd in (out_r, err_r, pidfd):
        p.register(fd, select.POLLIN)
    status = None
    try:
        while status is None:
            left = None if deadline is None else max(0, deadline - time.monotonic())
            ready = p.poll(None if left is None else int(left * 1000) + 1)
            if not ready and deadline is not None and time.monotonic() >= deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise HookFailed(f"{what}: hook ran past specified timeout of "
                                 f"{float(timeout):.1f}s")
            for fd, _ev in ready:
                if fd == pidfd:
                    status = os.waitpid(pid, 0)[1]
                    continue
                chunk = os.read(fd, 65536)
                if chunk:
                    got[fd] = (got[fd] + chunk)[-65536:]
                else:
                    p.unregister(fd)
        # what it wrote before exiting (a child it left behind may keep the pipes open)
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
            try:
                while chunk := os.read(fd, 65536):
                    got[fd] = (got[fd] + chunk)[-65536:]
            except BlockingIOError:
                pass
    finally:
        for fd in (out_r, err_r, pidfd):
            os.close(fd)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return
    # one line, as every error: newlines shown as \n (as runc's log shows them)
    out, err = (got[fd].decode(errors="replace").strip().replace("\n", "\\n")
                for fd in (out_r, err_r))
    raise HookFailed(f"{what}: {_how(status)}, stdout: {out}, stderr: {err}")
