"""``docker cp`` and ``docker export`` for the engine: the archive endpoints' operations.

The work happens in a helper process (berth.engine.cphelper) that sees the container's files
as the container does — a running container's mount namespace, or a private namespace with a
stopped container's rootfs and volumes, chrooted — so no path in the container can make berth
read or write outside it. This module starts the helper, streams the tar through it and maps
its one-line errors to berth's error kinds.

``diff`` (``GET /containers/{id}/changes``) needs no helper: it walks the container's upper
directory, which only berthd writes while the container is stopped, and compares with the
image's layers, by lstat only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator

from berth import errors

from . import container_state as cs

CHUNK = 256 * 1024


def _helper_argv(*args: str) -> tuple[list[str], dict]:
    import sys

    import berth

    src = os.path.dirname(os.path.dirname(os.path.abspath(berth.__file__)))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": src, "LC_ALL": "C.UTF-8"}
    # -P: never the working directory first in sys.path (the helper runs as root)
    return [sys.executable, "-P", "-S", "-m", "berth.engine.cphelper", *args], env


def _raise_helper(stderr: bytes, what: str) -> None:
    line = stderr.strip().splitlines()[-1] if stderr.strip() else b""
    try:
        msg = json.loads(line)
        kind = getattr(errors, msg.get("kind", "Internal"), errors.Internal)
        raise kind(msg.get("error", what))
    except (ValueError, AttributeError):
        raise errors.Internal(f"{what}: {line.decode(errors='replace')}") from None


class Session:
    """The container's files made visible to a helper for one operation."""

    def __init__(self, service, c) -> None:
        self.service = service
        self.c = c
        self.mounted_here = False
        self.locked = False

    async def __aenter__(self) -> list[str]:
        c = self.c
        if cs.is_running(c.state) and c.state.get("Pid"):
            return ["--pid", str(c.state["Pid"])]
        await self.c.lock.acquire()
        self.locked = True
        try:
            rootfs = os.path.join(self.service._run_dir(c.id), "rootfs")
            if not os.path.ismount(rootfs):
                await asyncio.to_thread(self._mount, rootfs)
                self.mounted_here = True
            args = ["--root", rootfs]
            for p in c.rec.get("MountPoints", []):
                if p["Type"] in ("bind", "volume") and p.get("Source"):
                    args += ["--bind", f"{p['Source']}={p['Destination']}"
                             + ("" if p["RW"] else ":ro")]
            return args
        except BaseException:
            self.locked = False
            self.c.lock.release()
            raise

    def _mount(self, rootfs: str) -> None:
        from berth.image.snapshot import mount_all

        os.makedirs(rootfs, 0o755, exist_ok=True)
        mount_all(self.service.engine.images.store.snapshots.mounts(self.c.rec["SnapshotKey"]),
                  rootfs)

    async def __aexit__(self, *exc) -> None:
        if not self.locked:
            return
        self.locked = False
        try:
            if self.mounted_here:
                from .containers import _unmount

                await asyncio.to_thread(_unmount, os.path.join(
                    self.service._run_dir(self.c.id), "rootfs"))
        finally:
            self.c.lock.release()


async def _spawn(where: list[str], *args: str, stdin=None, pass_fds=()):
    argv, env = _helper_argv(*where, *args)
    return await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=CHUNK,
        pass_fds=pass_fds)


async def _drain(proc, session: Session, what: str) -> AsyncIterator[bytes]:
    """The helper's stdout in chunks; its error (if it fails) at the end; cleanup always."""
    try:
        while True:
            b = await proc.stdout.read(CHUNK)
            if not b:
                break
            yield b
        await proc.wait()
        if proc.returncode != 0:
            _raise_helper(await proc.stderr.read(), what)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await session.__aexit__(None, None, None)


def encode_stat(st: dict) -> str:
    """The X-Docker-Container-Path-Stat header value."""
    return base64.b64encode(json.dumps(st, separators=(",", ":")).encode()).decode()


async def stat(service, c, path: str, ref: str = "") -> dict:
    if not path:
        raise errors.InvalidArgument("Path cannot be empty")
    async with Session(service, c) as where:
        proc = await _spawn(where, "stat", path)
        out, err = await proc.communicate()
    if proc.returncode != 0:
        _fix_not_found(err, path, ref or c.id)
    return json.loads(out)


def _fix_not_found(err: bytes, path: str, name: str) -> None:
    try:
        msg = json.loads(err.strip().splitlines()[-1])
        if msg.get("kind") == "NotFound":
            raise errors.NotFound(f"Could not find the file {path} in container {name}")
    except (ValueError, IndexError):
        pass
    _raise_helper(err, "archive")


async def get(service, c, path: str, ref: str = "") -> tuple[dict, AsyncIterator[bytes]]:
    """(the path's stat, the tar stream); the helper runs while the stream is read. ``ref``:
    the container as the client named it (dockerd's not-found message repeats it)."""
    if not path:
        raise errors.InvalidArgument("Path cannot be empty")
    session = Session(service, c)
    where = await session.__aenter__()
    try:
        proc = await _spawn(where, "get", path)
        line = await proc.stdout.readline()
        if not line:
            err = await proc.stderr.read()
            await proc.wait()
            _fix_not_found(err, path, ref or c.id)
        st = json.loads(line)
    except BaseException:
        await session.__aexit__(None, None, None)
        raise
    return st, _drain(proc, session, "archive")


async def put(service, c, path: str, body: AsyncIterator[bytes], no_overwrite: bool,
              copy_uid_gid: bool, ref: str = "") -> None:
    if not path:
        raise errors.InvalidArgument("Path cannot be empty")
    if c.rec["HostConfig"].get("ReadonlyRootfs") and not _in_volume(c, path):
        raise errors.PermissionDenied("container rootfs is marked read-only")
    # dockerd keeps the archive's owners; copyUIDGID gives everything to the container's
    # user, when it has one (daemon.tarCopyOptions)
    user = c.rec["Config"].get("User") if copy_uid_gid else ""
    async with Session(service, c) as where:
        chown = None
        if user:
            from . import users

            # the container's passwd and group, with its rootfs mounted (a stopped one's too)
            uid, gid, _g, _h = await asyncio.to_thread(
                users.resolve, os.path.join(service._run_dir(c.id), "rootfs"), user)
            chown = f"{uid}:{gid}"
        args = [*where, "put", path, *(("--chown", chown) if chown else ())]
        if no_overwrite:
            args.append("--no-overwrite-dir-non-dir")
        proc = await _spawn(args, stdin=asyncio.subprocess.PIPE)
        try:
            async for chunk in body:
                proc.stdin.write(chunk)
                await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            try:
                proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
        err = await proc.stderr.read()
        await proc.wait()
    if proc.returncode != 0:
        _fix_not_found(err, path, ref or c.id)


def _in_volume(c, path: str) -> bool:
    p = os.path.normpath("/" + path.lstrip("/"))
    for m in c.rec.get("MountPoints", []):
        d = m["Destination"]
        if m["RW"] and (p == d or p.startswith(d.rstrip("/") + "/")):
            return True
    return False


async def export(service, c) -> AsyncIterator[bytes]:
    """The rootfs alone, as docker export: no volume, tmpfs, /proc or /sys of the container's."""
    session = Session(service, c)
    fd = _pinned_rootfs(service, c) if cs.is_running(c.state) else None
    try:
        if fd is not None:
            proc = await _spawn(["--root-fd", str(fd)], "export", pass_fds=(fd,))
        else:
            where = await session.__aenter__()
            proc = await _spawn(where[:2], "export")
    except BaseException:
        await session.__aexit__(None, None, None)
        raise
    finally:
        if fd is not None:
            os.close(fd)
    return _drain(proc, session, "export")


def _pinned_rootfs(service, c) -> int | None:
    """An fd of a running container's rootfs mount in berthd's namespace, or None if it is not
    mounted (any more): the fd keeps the mount readable even once teardown detaches it."""
    rootfs = os.path.join(service._run_dir(c.id), "rootfs")
    try:
        fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    if os.fstat(fd).st_dev == os.stat(os.path.dirname(rootfs)).st_dev:
        os.close(fd)
        return None
    return fd


# --- diff ---------------------------------------------------------------------------------

KIND_MODIFIED, KIND_ADDED, KIND_DELETED = 0, 1, 2


def changes(upper: str, lowers: list[str], ignore: set[str]) -> list[dict]:
    """Docker's ``Changes`` of an overlay upper dir against its lower layers."""
    import stat as s

    out: dict[str, int] = {}

    def in_lower(rel: str) -> bool:
        return any(os.path.lexists(os.path.join(low, rel.lstrip("/"))) for low in lowers)

    for root, dirs, files in os.walk(upper):
        rel_root = "/" + os.path.relpath(root, upper) if root != upper else "/"
        for name in dirs + files:
            full = os.path.join(root, name)
            rel = os.path.normpath(os.path.join(rel_root, name))
            if rel in ignore:
                continue
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if s.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out[rel] = KIND_DELETED
                continue
            out[rel] = KIND_MODIFIED if in_lower(rel) else KIND_ADDED
            # A changed entry's parent directories changed too (when the image had them).
            parent = os.path.dirname(rel)
            while parent not in ("/", "") and parent not in out:
                out[parent] = KIND_MODIFIED if in_lower(parent) else KIND_ADDED
                parent = os.path.dirname(parent)
    # Directories that exist only to hold ignored mount points are no change of their own.
    for rel in list(out):
        if out[rel] == KIND_MODIFIED and os.path.isdir(os.path.join(upper, rel.lstrip("/"))):
            kids = [k for k in out if k.startswith(rel + "/")]
            if not kids:
                entries = os.listdir(os.path.join(upper, rel.lstrip("/")))
                if entries and all(os.path.join(rel, e) in ignore for e in entries):
                    del out[rel]
    return [{"Path": p, "Kind": k} for p, k in sorted(out.items())]
