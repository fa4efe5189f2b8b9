"""OCI hooks: run one with the container's state on its stdin, bounded by its timeout.

Used both by the runtime's command (createRuntime, prestart, poststart, poststop: in the
runtime's namespaces) and by the container's init (createContainer before pivot_root,
startContainer just before exec). Stdlib only and light: no subprocess.
"""

import os
import time

from berth.runtime.errors import InitFailed


class HookFailed(InitFailed):
    pass


def run(kind: str, hook: dict, state_json: str) -> None:
    """Run ``hook`` and wait for it; raise HookFailed on a non-zero exit or a timeout."""
    path = hook["path"]
    args = hook.get("args") or [path]
    env = {}
    for e in hook.get("env") or ():
        k, _, v = e.partition("=")
        env[k] = v
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(path, args, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_CLOSE, w)])
    except OSError as e:
        os.close(r)
        os.close(w)
        raise HookFailed(f"{kind} hook {path}: {e.strerror}") from e
    os.close(r)
    try:
        os.write(w, state_json.encode())
    except OSError:
        pass  # a hook need not read its stdin
    os.close(w)
    timeout = hook.get("timeout")
    deadline = time.monotonic() + timeout if timeout else None
    delay = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if deadline is not None and time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise HookFailed(f"{kind} hook {path}: timed out after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise HookFailed(f"{kind} hook {path}: exit status {code}")
