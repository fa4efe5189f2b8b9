"""The helper process behind ``docker cp`` and ``docker export``: file work *inside* a container.

    python3 -S -m berth.engine.cphelper (--pid PID | --root ROOTFS [--bind SRC=DST[:ro]]... |
                                         --root-fd FD) MODE [ARGS]

It first puts itself in the container's view of the filesystem, then works with plain paths:

- ``--pid PID`` (a running container): setns into the mount namespace of PID, which makes the
  namespace's root (the container's /) this process's root and cwd, with every volume and
  tmpfs the container sees;
- ``--root ROOTFS`` (a stopped container): a private mount namespace of its own, the
  container's volumes and binds mounted on the rootfs there, then chroot;
- ``--root-fd FD`` (export of a running container): chroot into the directory FD, berthd's
  open fd of the container's rootfs mount (the fd keeps that mount alive should the container
  stop meanwhile): the image's layers and the writable one, nothing mounted in the container.

Either way the kernel resolves every path as the container would: an absolute symlink or
``..`` in the container's files cannot lead outside it, which is why this is a process of its
own and not code in berthd (CVE-2018-15664 was a symlink swapped under dockerd's own path
resolution). berthd's threads never enter a namespace.

Modes (results on stdout; an error is one JSON line on stderr and exit 1):
- ``stat PATH``              → one JSON line: Docker's PathStat (name, size, mode, mtime,
                               linkTarget), the symlink itself when PATH names one;
- ``get PATH``               → the stat line, then a tar of PATH (Docker's rebasing: the entry
                               names start with PATH's base name, ``/.`` gives the contents;
                               the kernel's filesystems, /proc, /sys..., only as empty dirs);
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


def _not_a_directory(path: str) -> HelperError:
    # dockerd's words (a system error, 500): "lstat PATH: not a directory"
    return HelperError("Internal", f"lstat {path if path.startswith('/') else '/' + path}: "
                                   "not a directory")


def _abs(path: str) -> str:
    """The path as dockerd takes it: joined to "/" and cleaned (".." resolved lexically), its
    trailing "/" or "/." kept (they ask for a directory, or for its contents)."""
    clean = os.path.normpath("/" + path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    tail = path.rstrip("/")
    if (tail.endswith("/.") or tail == ".") and clean != "/":
        return clean + "/."
    if path.endswith("/") and clean != "/":
        return clean + "/"
    return clean


def stat_path(path: str) -> dict:
    path_given, path = path, _abs(path)
    p = _resolve(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        raise HelperError("NotFound", f"Could not find the file {path_given} in container"
                          ) from None
    except NotADirectoryError:
        raise _not_a_directory(path_given) from None
    if (path.endswith("/") or path.endswith("/.")) and not stat.S_ISDIR(st.st_mode):
        # "file/": the trailing slash asks for a directory (the CLI would copy over the file)
        raise _not_a_directory(path_given)
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = os.path.realpath(p)
    return {"name": _entry_name(path), "size": st.st_size, "mode": go_mode(st.st_mode),
            "mtime": _rfc3339(st.st_mtime), "linkTarget": link}


def _entry_name(path: str) -> str:
    """The name the archive's entries start with, as dockerd names them (Go's filepath.Base):
    "." for DIR/. (and DIR/./), "/" for the root, the last element otherwise."""
    s = path.rstrip("/")
    if not s:
        return "/"
    return s.rsplit("/", 1)[-1] if "/" in s else s


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
    _write_json_line(st)
    sys.stdout.buffer.flush()
    path = _abs(path)
    p = _resolve(path)
    base = _entry_name(path)
    out = os.fdopen(1, "wb", buffering=1 << 16, closefd=False)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, p, base)
        if s.S_ISDIR(os.lstat(p).st_mode) and p not in _SKIP:
            _add_tree(tar, p, "" if base == "/" else base, "/" if base == "/" else "")
    out.flush()


def _add(tar, path: str, name: str, prefix: str = "") -> None:
    """One entry, named exactly ``prefix + name`` (tarfile's own add strips a leading "/",
    which dockerd's entries under the root keep: the client renames by it)."""
    ti = tar.gettarinfo(path, arcname=name)
    if prefix or name == "/":
        ti.name = prefix + name if name != "/" else "/"
        if ti.islnk():
            ti.linkname = prefix + ti.linkname
    if ti.isreg():
        with open(path, "rb") as f:
            tar.addfile(ti, f)
    else:
        tar.addfile(ti)


#: mount points (container paths) of the kernel's filesystems: never walked into (their files
#: change size while read, some block or fail); dockerd's archive, made from the rootfs and
#: volumes only, has them as empty directories too
_PSEUDO_FS = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs",
              "debugfs", "tracefs", "bpf", "fusectl", "pstore", "configfs", "efivarfs",
              "binfmt_misc", "hugetlbfs", "autofs", "selinuxfs", "nsfs"}
_SKIP: set[str] = set()


def _pseudo_mounts(pid: int) -> set[str]:
    """The mount points of kernel filesystems in PID's mount namespace (paths inside it)."""
    out = set()
    with open(f"/proc/{pid}/mountinfo", "rb") as f:
        for line in f.read().decode("utf-8", "surrogateescape").splitlines():
            a = line.split(" ")
            try:
                fstype = a[a.index("-") + 1]
            except (ValueError, IndexError):
                continue
            # mountinfo escapes space, tab, newline and backslash as octal
            mnt = (a[4].replace("\\040", " ").replace("\\011", "\t")
                   .replace("\\012", "\n").replace("\\134", "\\"))
            # the runtime's /dev (device nodes, /dev/shm, /dev/pts) is not the container's
            # files either: dockerd's archive has no device node of it
            if fstype in _PSEUDO_FS or (mnt == "/dev" and fstype in ("tmpfs", "devtmpfs")):
                out.add(mnt)
    return out


def _add_tree(tar, path: str, arc: str, prefix: str = "") -> None:
    """The entries under ``path`` as dockerd writes them: depth first in name order (Go's
    filepath.Walk), each under ``arc`` ("./x" for a "/." source, "/x" under the root: the
    client renames by the first path element, "." and "/" included)."""
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        name = f"{arc}/{e.name}" if arc else e.name
        _add(tar, e.path, name, prefix)
        if e.is_dir(follow_symlinks=False) and e.path not in _SKIP:
            _add_tree(tar, e.path, name, prefix)


def put(path: str, no_overwrite_dir_non_dir: bool, chown: tuple[int, int] | None) -> None:
    tarfile = _tarfile()

    target = os.path.realpath(path if path.startswith("/") else "/" + path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        raise HelperError("NotFound", f"Could not find the file {path} in container") from None
    except NotADirectoryError:
        raise _not_a_directory(path) from None
    if not stat.S_ISDIR(st.st_mode):
        raise HelperError("Internal", "extraction point is not a directory")  # dockerd: 500
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
        _add_tree(tar, "/", "")
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


def _make_mount_point(target: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, 0o755, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
    os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))


def enter(pid: int | None, root: str | None, binds: list[tuple[str, str, bool]],
          root_fd: int | None = None) -> None:
    from berth.engine.rootpath import secure_join
    from berth.linux import mount as m
    from berth.linux import ns

    if root_fd is not None:
        os.fchdir(root_fd)
        os.chroot(".")
        os.close(root_fd)
        os.chdir("/")
        _seal_imports()
        return
    if pid is not None:
        _SKIP.update(_pseudo_mounts(pid))
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
        if not os.path.exists(src):
            continue
        if not os.path.lexists(target):
            # as dockerd's mountVolumes: a mount point a never-started container's image
            # lacks is made in its writable layer (a start makes it there too)
            _make_mount_point(target, os.path.isdir(src))
        m.mount(src, target, None, m.MS_BIND | m.MS_REC, None)
        if ro:
            m.mount(None, target, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY, None)
    os.chroot(root)
    os.chdir("/")
    _seal_imports()


def main(argv: list[str]) -> int:
    pid = root = root_fd = None
    binds: list[tuple[str, str, bool]] = []
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        if argv[i] == "--pid":
            pid = int(argv[i + 1])
        elif argv[i] == "--root":
            root = argv[i + 1]
        elif argv[i] == "--root-fd":
            root_fd = int(argv[i + 1])
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
        enter(pid, root, binds, root_fd)
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
