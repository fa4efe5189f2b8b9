"""The helper process behind ``docker cp`` and ``docker export``: file work *inside* a container.

    python3 -S -m berth.engine.cphelper (--pid PID | --root ROOTFS [--bind SRC=DST[:ro]]...)
                                        MODE [ARGS]

It first puts itself in the container's view of the filesystem, then works with plain paths:

- ``--pid PID`` (a running container): setns into the mount namespace of PID, which makes the
  namespace's root (the container's /) this process's root and cwd, with every volume and
  tmpfs the container sees;
- ``--root ROOTFS`` (a stopped container): a private mount namespace of its own, the
  container's volumes and binds mounted on the rootfs there, then chroot.

Either way the kernel resolves every path as the container would: an absolute symlink or
``..`` in the container's files cannot lead outside it, which is why this is a process of its
own and not code in berthd (CVE-2018-15664 was a symlink swapped under dockerd's own path
resolution). berthd's threads never enter a namespace.

Modes (results on stdout; an error is one JSON line on stderr and exit 1):
- ``stat PATH``              → one JSON line: Docker's PathStat (name, size, mode, mtime,
                               linkTarget), the symlink itself when PATH names one;
- ``get PATH``               → the stat line, then a tar of PATH (Docker's rebasing: the entry
                               names start with PATH's base name, ``/.`` gives the contents);
- ``put PATH [--no-overwrite-dir-non-dir] [--chown UID:GID]`` ← a tar on stdin, extracted
                               into the directory PATH;
- ``export``                 → a tar of the whole root.
"""

import _json
import os
import stat
import sys
import time

_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


class HelperError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def go_mode(st_mode: int) -> int:
    """A unix st_mode as Go's os.FileMode (what Docker's PathStat carries)."""
    s = stat
    m = st_mode & 0o777
    if st_mode & s.S_ISUID:
        m |= _GO_SETUID
    if st_mode & s.S_ISGID:
        m |= _GO_SETGID
    if st_mode & s.S_ISVTX:
        m |= _GO_STICKY
    fmt = s.S_IFMT(st_mode)
    if fmt == s.S_IFDIR:
        m |= _GO_DIR
    elif fmt == s.S_IFLNK:
        m |= _GO_SYMLINK
    elif fmt == s.S_IFBLK:
        m |= _GO_DEVICE
    elif fmt == s.S_IFCHR:
        m |= _GO_DEVICE | _GO_CHARDEV
    elif fmt == s.S_IFIFO:
        m |= _GO_PIPE
    elif fmt == s.S_IFSOCK:
        m |= _GO_SOCKET
    return m


def _rfc3339(t: float) -> str:
    ns = int(t * 1e9)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        (f".{frac}" if frac else "") + "Z"


def _split(path: str) -> tuple[str, str]:
    """(directory to resolve, last entry) — Docker's SplitPathDirEntry."""
    p = path if path.startswith("/") else "/" + path
    trailing = p.endswith("/") or p.endswith("/.")
    clean = os.path.normpath(p)
    if p.endswith("/."):
        return clean, "."
    d, base = os.path.split(clean)
    if trailing and clean != "/":
        return clean, "."
    return d or "/", base or "."


def _resolve(path: str) -> str:
    """The path with every symlink but the last entry followed (the last one too when the
    path ends in / or /.), as Docker's ResolvePath."""
    d, base = _split(path)
    real_d = os.path.realpath(d)
    return real_d if base == "." else os.path.join(real_d, base)


def stat_path(path: str) -> dict:
    p = _resolve(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        raise HelperError("NotFound", f"Could not find the file {path} in container") from None
    except NotADirectoryError:
        raise HelperError("NotFound", f"Could not find the file {path} in container") from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = os.path.realpath(p)
    name = os.path.basename(os.path.normpath(path)) or "/"
    if path.endswith("/."):
        name = "."
    return {"name": name, "size": st.st_size, "mode": go_mode(st.st_mode),
            "mtime": _rfc3339(st.st_mtime), "linkTarget": link}


def _write_json_line(obj) -> None:
    enc = _json.make_encoder({}, None, _json.encode_basestring_ascii, None, ":", ",", False,
                             False, True)
    sys.stdout.buffer.write("".join(enc(obj, 0)).encode() + b"\n")


_NO_FILTER: dict = {}


def _tarfile():
    """tarfile that never asks NSS for user names: inside the container, glibc would load
    the container's libnss_*.so into this root process (CVE-2019-14271, docker cp)."""
    import tarfile

    tarfile.pwd = None
    tarfile.grp = None
    if hasattr(tarfile, "fully_trusted_filter"):
        # the chroot is the boundary here, not the archive's paths (Python >= 3.11.4)
        _NO_FILTER["filter"] = "fully_trusted"
    return tarfile


def get(path: str) -> None:
    s = stat
    tarfile = _tarfile()

    st = stat_path(path)
    if path.endswith("/") and not st["mode"] & _GO_DIR:
        raise HelperError("InvalidArgument", f"not a directory: {path}")
    _write_json_line(st)
    sys.stdout.buffer.flush()
    p = _resolve(path)
    base = "." if path.endswith("/.") else (os.path.basename(os.path.normpath(path)) or ".")
    out = os.fdopen(1, "wb", buffering=1 << 16, closefd=False)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(p, arcname=base, recursive=False)
        if s.S_ISDIR(os.lstat(p).st_mode):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                rel = os.path.relpath(root, p)
                for name in sorted(dirs) + sorted(files):
                    r = os.path.normpath(os.path.join(rel, name))
                    tar.add(os.path.join(root, name),
                            arcname=r if base == "." else os.path.join(base, r),
                            recursive=False)
    out.flush()


def put(path: str, no_overwrite_dir_non_dir: bool, chown: tuple[int, int] | None) -> None:
    tarfile = _tarfile()

    target = os.path.realpath(path if path.startswith("/") else "/" + path)
    if not os.path.exists(target):
        raise HelperError("NotFound", f"Could not find the file {path} in container")
    if not os.path.isdir(target):
        raise HelperError("InvalidArgument", "extraction point is not a directory")
    if os.statvfs(target).f_flag & os.ST_RDONLY:
        raise HelperError("PermissionDenied", "container rootfs is marked read-only")
    src = os.fdopen(0, "rb", closefd=False)
    with tarfile.open(fileobj=src, mode="r|*") as tar:
        for m in tar:
            name = os.path.normpath(m.name.lstrip("/"))
            if name == ".":
                continue
            if name.startswith(".."):
                raise HelperError("InvalidArgument", f"invalid path in archive: {m.name}")
            dest = os.path.join(target, name)
            if no_overwrite_dir_non_dir and os.path.lexists(dest):
                is_dir = os.path.isdir(dest) and not os.path.islink(dest)
                if is_dir != m.isdir():
                    what = "directory" if is_dir else "non-directory"
                    raise HelperError("InvalidArgument", f"cannot overwrite {what} "
                                      f"\"{os.path.join(path, name)}\" with "
                                      f"{'non-directory' if is_dir else 'directory'}")
            if chown is not None:
                m.uid, m.gid = chown
                m.uname = m.gname = ""
            m.name = name
            if m.islnk():
                m.linkname = os.path.normpath(m.linkname.lstrip("/"))
            if os.path.lexists(dest) and not m.isdir() and \
                    not (os.path.isdir(dest) and not os.path.islink(dest)):
                os.unlink(dest)
            tar.extract(m, target, numeric_owner=True, **_NO_FILTER)


def export() -> None:
    tarfile = _tarfile()

    out = os.fdopen(1, "wb", buffering=1 << 16, closefd=False)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk("/"):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                tar.add(full, arcname=os.path.relpath(full, "/"), recursive=False)
    out.flush()


def _preload() -> None:
    """Import now everything the work may need: once inside, the container's files are the
    filesystem, and a module imported from there would be code the container chose."""
    _tarfile()
    for name in ("zlib", "gzip", "bz2", "lzma", "_compression", "shutil", "copy", "struct"):
        try:
            __import__(name)
        except ImportError:
            pass
    for codec in ("utf-8", "ascii", "latin-1"):
        "x".encode(codec)
    import berth.engine.rootpath  # noqa: F401
    import berth.linux.mount  # noqa: F401
    import berth.linux.ns  # noqa: F401


def _seal_imports() -> None:
    """No import from the filesystem from here on: a lazy import now fails instead."""
    sys.meta_path[:] = [f for f in sys.meta_path
                        if getattr(f, "__name__", "") in ("BuiltinImporter", "FrozenImporter")]
    sys.path_importer_cache.clear()
    sys.path[:] = []


def enter(pid: int | None, root: str | None, binds: list[tuple[str, str, bool]]) -> None:
    from berth.engine.rootpath import secure_join
    from berth.linux import mount as m
    from berth.linux import ns

    if pid is not None:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            ns.setns(fd, ns.CLONE_NEWNS)
        finally:
            os.close(fd)
        os.chdir("/")
        _seal_imports()
        return
    ns.unshare(ns.CLONE_NEWNS)
    m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE, None)
    for src, dst, ro in binds:
        target = secure_join(root, dst)
        if not os.path.exists(target) or not os.path.exists(src):
            continue
        m.mount(src, target, None, m.MS_BIND | m.MS_REC, None)
        if ro:
            m.mount(None, target, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY, None)
    os.chroot(root)
    os.chdir("/")
    _seal_imports()


def main(argv: list[str]) -> int:
    pid = root = None
    binds: list[tuple[str, str, bool]] = []
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        if argv[i] == "--pid":
            pid = int(argv[i + 1])
        elif argv[i] == "--root":
            root = argv[i + 1]
        elif argv[i] == "--bind":
            spec = argv[i + 1]
            ro = spec.endswith(":ro")
            spec = spec[:-3] if ro else spec
            src, _, dst = spec.partition("=")
            binds.append((src, dst, ro))
        else:
            break
        i += 2
    rest = argv[i:]
    _preload()
    try:
        if not rest:
            raise HelperError("InvalidArgument", "cphelper: no mode")
        enter(pid, root, binds)
        mode = rest[0]
        if mode == "stat":
            _write_json_line(stat_path(rest[1]))
        elif mode == "get":
            get(rest[1])
        elif mode == "put":
            chown = None
            nodir = False
            j = 2
            while j < len(rest):
                if rest[j] == "--no-overwrite-dir-non-dir":
                    nodir = True
                elif rest[j] == "--chown":
                    u, _, g = rest[j + 1].partition(":")
                    chown = (int(u), int(g))
                    j += 1
                j += 1
            put(rest[1], nodir, chown)
        elif mode == "export":
            export()
        else:
            raise HelperError("InvalidArgument", f"cphelper: unknown mode {mode}")
        sys.stdout.buffer.flush()
        return 0
    except HelperError as e:
        sys.stderr.write(_json_err(e.kind, e.message))
        return 1
    except BrokenPipeError:
        return 1
    except OSError as e:
        sys.stderr.write(_json_err("InvalidArgument", f"{e.strerror or e}: "
                                   f"{e.filename or ''}".rstrip(": ")))
        return 1
    except Exception as e:  # noqa: BLE001 - reported to berthd as one line
        sys.stderr.write(_json_err("Internal", f"{type(e).__name__}: {e}"))
        return 1


def _json_err(kind: str, message: str) -> str:
    return '{"kind":"' + kind + '","error":' + _json.encode_basestring_ascii(message) + "}\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
