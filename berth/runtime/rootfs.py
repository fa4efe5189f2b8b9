"""The container's filesystem, built by its init inside the new mount namespace.

Order (as runc's prepareRootfs / finalizeRootfs):

    make / rslave (or linux.rootfsPropagation) → bind the rootfs onto itself
    → each mount of config.mounts, in order → default device nodes, linux.devices, /dev links
    → [createRuntime/createContainer hooks] → pivot_root (or MS_MOVE + chroot with no_pivot)
    → sysctls → read-only tmpfs and /dev mounts made so (they are mounted writable, so that
    what goes in them can be made first) → readonlyPaths → maskedPaths → readonly root

Without pivot_root (--no-pivot) every whole proc and sysfs mount of the host is detached
before the MS_MOVE, as runc does, so that none stays reachable under the chroot.

Invariant: no mount target or created file is ever reached through a path string that the
rootfs can redirect. Every destination is opened with openat2(RESOLVE_IN_ROOT) against an fd of
the rootfs (missing components are made with mkdirat from an fd of their parent), and the mount
goes onto /proc/self/fd/N of that O_PATH fd: a symlink such as /proc -> / or a target through
../.. resolves inside the rootfs, never outside it. proc and sysfs must land exactly where
asked (a symlinked /proc is refused, as runc refuses it).
"""

import os

from berth.linux import fs as lfs
from berth.linux import mount as lm
from berth.runtime import spec as ospec
from berth.runtime.errors import InitFailed

_RESOLVE = lfs.RESOLVE_IN_ROOT | lfs.RESOLVE_NO_MAGICLINKS

DEFAULT_DEVICES = [
    ("/dev/null", "c", 1, 3), ("/dev/zero", "c", 1, 5), ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8), ("/dev/urandom", "c", 1, 9), ("/dev/tty", "c", 5, 0),
]


class RootfsError(InitFailed):
    pass


def _fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def open_in_root(rootfd: int, path: str, flags: int = os.O_PATH) -> int:
    return lfs.openat2(rootfd, path.lstrip("/") or ".", flags | os.O_CLOEXEC, 0, _RESOLVE)


def mkdirall(rootfd: int, path: str, mode: int = 0o755, file: bool = False,
             _depth: int = 0) -> int:
    """An O_PATH fd of ``path`` inside the root of ``rootfd``, creating what is missing.

    The last component is made a regular file when ``file`` is true (bind mounts of files).
    A dangling symlink on the way is followed as the kernel would with the rootfs as root:
    what it names is made, inside the rootfs.
    """
    try:
        return open_in_root(rootfd, path)
    except FileNotFoundError:
        pass
    if _depth > 40:
        raise OSError(40, "too many levels of symbolic links", path)
    parts = [p for p in path.split("/") if p and p != "."]
    done = ""
    for i, part in enumerate(parts):
        nxt = done + "/" + part
        try:
            os.close(open_in_root(rootfd, nxt))
            done = nxt
            continue
        except FileNotFoundError:
            pass
        parent = open_in_root(rootfd, done or "/", os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                link = os.readlink(part, dir_fd=parent)
            except OSError:
                link = None
            if link is not None:
                base = link if link.startswith("/") else done + "/" + link
                rest = "/".join(parts[i + 1:])
                return mkdirall(rootfd, base + ("/" + rest if rest else ""), mode, file,
                                _depth + 1)
            if file and i == len(parts) - 1:
                os.close(os.open(part, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                                 0o644, dir_fd=parent))
            else:
                os.mkdir(part, mode, dir_fd=parent)
        except FileExistsError:
            pass  # made by someone else meanwhile: resolved below
        finally:
            os.close(parent)
        done = nxt
    return open_in_root(rootfd, path)


def copy_tree(src: int, dst: int) -> None:
    """Copy the directory ``src`` into ``dst`` (both directory fds): files, directories,
    symlinks (as links, never followed), fifos and device nodes, with owner, mode and times."""
    for e in os.scandir(src):
        name = e.name
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        kind = st.st_mode & 0o170000
        if kind == 0o040000:
            os.mkdir(name, 0o700, dir_fd=dst)
            s2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=src)
            d2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dst)
            try:
                copy_tree(s2, d2)
            finally:
                os.close(s2)
                os.close(d2)
        elif kind == 0o100000:
            fi = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
            try:
                fo = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                             os.O_CLOEXEC, 0o600, dir_fd=dst)
                try:
                    while os.sendfile(fo, fi, None, 1 << 20) > 0:
                        pass
                finally:
                    os.close(fo)
            finally:
                os.close(fi)
        elif kind == 0o120000:
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        elif kind in (0o010000, 0o020000, 0o060000):
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst)
        else:
            continue  # sockets are not copied
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        if kind != 0o120000:
            os.chmod(name, st.st_mode & 0o7777, dir_fd=dst)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst,
                 follow_symlinks=False)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parent_mount(path: str, mountinfo: str | None = None) -> tuple[str, bool]:
    """(mount point, shared?) of the mount ``path`` is on: the longest mount point that is
    ``path`` or one of its parents (the last one mounted there wins, as the kernel shows it)."""
    if mountinfo is None:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
    best, shared = "/", False
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 7:
            continue
        point = _unescape(fields[4])
        inside = point == "/" or path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            opt = fields[6:fields.index("-")] if "-" in fields else []
            best, shared = point, any(o.startswith("shared:") for o in opt)
    return best, shared


def full_proc_sys_mounts(mountinfo: str, rootfs: str) -> list[str]:
    """Mount points of whole (root "/") proc and sysfs mounts outside ``rootfs``."""
    out = []
    for line in mountinfo.splitlines():
        f = line.split(" ")
        if "-" not in f:
            continue
        fstype = f[f.index("-") + 1]
        point = _unescape(f[4])
        inside = point == rootfs or point.startswith(rootfs.rstrip("/") + "/")
        if fstype in ("proc", "sysfs") and _unescape(f[3]) == "/" and not inside:
            out.append(point)
    return out


class Rootfs:
    def __init__(self, plan: dict) -> None:
        self.plan = plan
        self.cfg = plan["config"]
        self.linux = self.cfg.get("linux") or {}
        self.rootfs = plan["rootfs"]
        self.rootfd = -1
        self.userns = any(n["type"] == "user" for n in self.linux.get("namespaces") or ())
        self.has_devpts = False
        self.dev_bound = False
        self.index = -1  # of the mount being made
        self.late_ro: list[tuple[str, int]] = []  # (destination, flags) made ro in finalize

    def real(self, fd: int) -> str:
        return os.readlink(_fdpath(fd))

    def prepare(self) -> None:
        """Everything before pivot_root."""
        prop = self.linux.get("rootfsPropagation")
        pflag = ospec.PROPAGATION[prop] if prop else (lm.MS_SLAVE | lm.MS_REC)
        lm.mount(None, "/", None, pflag)
        if pflag not in (lm.MS_SLAVE | lm.MS_REC, lm.MS_PRIVATE | lm.MS_REC):
            self._private_parent()
        # pivot_root needs the rootfs to be a mount point whose parent is not shared.
        lm.mount(self.rootfs, self.rootfs, None, lm.MS_BIND | lm.MS_REC)
        self.rootfd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for i, m in enumerate(self.cfg.get("mounts") or ()):
            self.index = i
            try:
                self.mount_one(m)
            except OSError as e:
                raise RootfsError(f"mounts[{i}] {m['destination']}: {e.strerror or e}") from e
        try:
            self.devices()
        except OSError as e:
            raise RootfsError(f"devices: {e}") from e
        cwd = (self.cfg.get("process") or {}).get("cwd") or "/"
        os.close(mkdirall(self.rootfd, cwd))

    def _private_parent(self) -> None:
        """Make the mount holding the rootfs private if it is shared, as runc does: pivot_root
        refuses a shared parent (EINVAL), and the rootfs bind would propagate to the host.
        (After the default rslave or an rprivate no mount is shared: not needed then.)"""
        point, shared = parent_mount(self.rootfs)
        if shared:
            lm.mount(None, point, None, lm.MS_PRIVATE)

    def mount_one(self, m: dict) -> None:
        _, _, _, rec = ospec.mount_flags(m.get("options") or [])
        self._mount_one(m)
        if rec:
            # rro, rnosuid, ...: this mount and every mount below it, in one call.
            fd = open_in_root(self.rootfd, m["destination"])
            try:
                lm.mount_setattr(fd, "", lm.AT_EMPTY_PATH | lm.AT_RECURSIVE, rec[0], rec[1])
            finally:
                os.close(fd)

    def _mount_one(self, m: dict) -> None:
        dest = m["destination"]
        typ = m.get("type") or ""
        opts = m.get("options") or []
        flags, pflags, data, _ = ospec.mount_flags(opts)
        src = m.get("source") or ""
        bind = bool(flags & lm.MS_BIND) or typ == "bind"
        if typ == "cgroup" or (typ == "cgroup2" and not bind):
            return self.mount_cgroup(m, flags, typ)
        if flags & lm.MS_RDONLY and (typ == "tmpfs" or os.path.normpath(dest) == "/dev"):
            # As runc: made writable, made read-only in finalize(), so that what goes in
            # them (the /dev nodes, /dev/pts, a tmpfs's mode) can be made first.
            flags &= ~lm.MS_RDONLY
            self.late_ro.append((dest, flags & (lm.MS_NOSUID | lm.MS_NODEV | lm.MS_NOEXEC)))
        if bind:
            flags |= lm.MS_BIND
            if not src.startswith("/"):
                src = os.path.join(self.plan["bundle"], src)
            tree = (self.plan.get("mount_fds") or {}).get(str(self.index))
            if tree is not None:  # opened before the user namespace (berth.runtime.init)
                is_dir = os.fstat(tree).st_mode & 0o170000 == 0o040000
            else:
                is_dir = os.path.isdir(src)
                if not os.path.exists(src):
                    raise OSError(2, f"bind source {src} does not exist")
            fd = mkdirall(self.rootfd, dest, file=not is_dir)
            try:
                if tree is not None:
                    lm.move_mount_fd(tree, fd)
                    os.close(tree)
                else:
                    lm.mount(src, _fdpath(fd), None, flags & (lm.MS_BIND | lm.MS_REC))
            finally:
                os.close(fd)
            # The new mount hides fd's inode: reopen the destination to reach the mount itself.
            rest = flags & ~(lm.MS_BIND | lm.MS_REC | lm.MS_REMOUNT)
            if rest or pflags:
                fd = open_in_root(self.rootfd, dest)
                try:
                    if rest:
                        self.remount(_fdpath(fd), rest)
                    if pflags:
                        lm.mount(None, _fdpath(fd), None, pflags)
                finally:
                    os.close(fd)
            if dest == "/dev":
                self.dev_bound = True
            return
        label = self.linux.get("mountLabel")
        if label and typ not in ("proc", "sysfs", "mqueue") and "context=" not in data:
            # the SELinux label of what the mount holds, as runc gives it
            data = f'{data + "," if data else ""}context="{label}"'
        if typ == "devpts":
            self.has_devpts = True
        if typ in ("proc", "sysfs"):
            self._ordinary_directory(dest, typ)
        fd = mkdirall(self.rootfd, dest)
        try:
            real = self.real(fd)
            expect = os.path.normpath(self.rootfs + "/" + dest)
            if typ in ("proc", "sysfs") and real != expect:
                raise OSError(1, f"filesystem {typ!r} must be mounted on ordinary directory: "
                                 f"{dest} resolves to {real[len(self.rootfs):] or '/'} in the "
                                 "rootfs")
            if typ == "tmpfs" and "tmpcopyup" in opts:
                return self.tmpfs_copyup(fd, dest, src, flags & ~lm.MS_REMOUNT, data, pflags)
            lm.mount(src or typ, _fdpath(fd), typ, flags & ~lm.MS_REMOUNT, data or None)
            if pflags:
                lm.mount(None, real, None, pflags)
        finally:
            os.close(fd)

    def _ordinary_directory(self, dest: str, typ: str) -> None:
        """proc and sysfs go on a directory or nowhere: a symlink (or file) there is refused
        before anything is made (a symlinked /proc has been a way out of containers)."""
        try:
            fd = open_in_root(self.rootfd, dest, os.O_PATH | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        try:
            if os.fstat(fd).st_mode & 0o170000 != 0o040000:
                raise OSError(1, f"filesystem {typ!r} must be mounted on ordinary directory "
                                 f"({dest} is not a directory)")
        finally:
            os.close(fd)

    def tmpfs_copyup(self, fd: int, dest: str, src: str, flags: int, data: str,
                     pflags: int) -> None:
        """A tmpfs on ``dest`` that starts with what ``dest`` held (runc's tmpcopyup). The old
        directory is opened before the tmpfs hides it and copied through fds only."""
        old = os.open(_fdpath(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            lm.mount(src or "tmpfs", _fdpath(fd), "tmpfs", flags & ~lm.MS_RDONLY, data or None)
            new = open_in_root(self.rootfd, dest, os.O_RDONLY | os.O_DIRECTORY)
            try:
                st = os.fstat(old)
                copy_tree(old, new)
                os.chmod(new, st.st_mode & 0o7777)
                os.chown(new, st.st_uid, st.st_gid)
                real = self.real(new)
            finally:
                os.close(new)
        finally:
            os.close(old)
        if flags & lm.MS_RDONLY:
            lm.mount(None, real, None, lm.MS_REMOUNT | flags, data or None)
        if pflags:
            lm.mount(None, real, None, pflags)

    def remount(self, target: str, flags: int) -> None:
        try:
            lm.mount(None, target, None, lm.MS_REMOUNT | lm.MS_BIND | flags)
        except PermissionError:
            # In a user namespace the source's nosuid/nodev/noexec/ro are locked: keep them.
            st = os.statvfs(target)
            locked = st.f_flag & (lm.MS_NOSUID | lm.MS_NODEV | lm.MS_NOEXEC | lm.MS_RDONLY |
                                  lm.MS_NOATIME | lm.MS_NODIRATIME | lm.MS_RELATIME)
            lm.mount(None, target, None, lm.MS_REMOUNT | lm.MS_BIND | flags | locked)

    def mount_cgroup(self, m: dict, flags: int, typ: str) -> None:
        dest = m["destination"]
        cg = self.plan.get("cgroup") or {}
        paths = cg.get("paths") or {}
        ro = flags & lm.MS_RDONLY
        base = flags & (lm.MS_NOSUID | lm.MS_NODEV | lm.MS_NOEXEC)
        if cg.get("version") == 2:
            fd = mkdirall(self.rootfd, dest)
            try:
                if self.plan.get("cgroupns"):
                    lm.mount("cgroup2", _fdpath(fd), "cgroup2", base | ro)
                else:
                    lm.mount(paths[""], _fdpath(fd), None, lm.MS_BIND)
            finally:
                os.close(fd)
            if not self.plan.get("cgroupns"):
                fd = open_in_root(self.rootfd, dest)
                try:
                    self.remount(_fdpath(fd), base | ro)
                finally:
                    os.close(fd)
            return
        # v1: a tmpfs holding one bind of the container's own cgroup per hierarchy.
        fd = mkdirall(self.rootfd, dest)
        try:
            lm.mount("tmpfs", _fdpath(fd), "tmpfs", base, "mode=755")
            top = self.real(fd)
        finally:
            os.close(fd)
        for sub, hostdir in sorted(paths.items()):
            name = sub[5:] if sub.startswith("name=") else sub
            if sub == "unified" or not os.path.isdir(hostdir):
                continue  # as runc: hybrid hosts show the v1 hierarchies only
            sfd = mkdirall(self.rootfd, dest + "/" + name)
            try:
                real = self.real(sfd)
                lm.mount(hostdir, real, None, lm.MS_BIND)
                self.remount(real, base | ro)
            finally:
                os.close(sfd)
        # The tmpfs itself stays writable, as runc leaves it.
        del top

    def devices(self) -> None:
        if self.dev_bound:
            return
        old = os.umask(0)
        try:
            devs = [(p, t, ma, mi, 0o666, 0, 0) for p, t, ma, mi in DEFAULT_DEVICES]
            for d in self.linux.get("devices") or ():
                devs.append((d["path"], d["type"], d.get("major", 0), d.get("minor", 0),
                             d.get("fileMode", 0o666) & 0o7777, d.get("uid", 0),
                             d.get("gid", 0)))
            for path, t, major, minor, mode, uid, gid in devs:
                self.make_device(path, t, major, minor, mode, uid, gid)
            links = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                     ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]
            if os.path.exists("/proc/kcore"):
                links.append(("/proc/kcore", "/dev/core"))
            if self.has_devpts:
                links.append(("pts/ptmx", "/dev/ptmx"))
            dfd = mkdirall(self.rootfd, "/dev")
            try:
                ddir = os.open(_fdpath(dfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            finally:
                os.close(dfd)
            try:
                for target, link in links:
                    name = link[5:]
                    if name == "ptmx":
                        try:
                            os.unlink(name, dir_fd=ddir)
                        except FileNotFoundError:
                            pass
                    try:
                        os.symlink(target, name, dir_fd=ddir)
                    except FileExistsError:
                        pass
            finally:
                os.close(ddir)
        finally:
            os.umask(old)

    def make_device(self, path: str, t: str, major: int, minor: int, mode: int, uid: int,
                    gid: int) -> None:
        kind = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}[t]
        parent, name = os.path.split(path)
        pfd = mkdirall(self.rootfd, parent)
        try:
            dfd = os.open(_fdpath(pfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(pfd)
        try:
            if self.userns:
                # mknod is refused in a user namespace: bind the host's node instead.
                try:
                    os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644,
                                     dir_fd=dfd))
                except FileExistsError:
                    pass
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                try:
                    lm.mount(path, _fdpath(fd), None, lm.MS_BIND)
                finally:
                    os.close(fd)
                return
            try:
                os.unlink(name, dir_fd=dfd)
            except (FileNotFoundError, IsADirectoryError):
                pass
            os.mknod(name, kind | mode, os.makedev(major, minor), dir_fd=dfd)
            os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(dfd)

    def pivot(self) -> None:
        if self.plan.get("no_pivot"):
            self._hide_host_proc_sys()
            os.chdir(self.rootfs)
            lm.mount(self.rootfs, "/", None, lm.MS_MOVE)
            os.chroot(".")
            os.chdir("/")
            return
        oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        newroot = os.open(self.rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fchdir(newroot)
            # pivot_root(".", ".") stacks the old root on top of the new one; detaching it then
            # needs no directory for it in the rootfs (runc's trick).
            lm.pivot_root(".", ".")
            os.fchdir(oldroot)
            lm.mount(None, ".", None, lm.MS_SLAVE | lm.MS_REC)
            lm.umount2(".", lm.MNT_DETACH)
            os.chdir("/")
        finally:
            os.close(oldroot)
            os.close(newroot)
        if self.rootfd >= 0:
            os.close(self.rootfd)
            self.rootfd = -1

    def _hide_host_proc_sys(self) -> None:
        """Without pivot_root the host's /proc and /sys stay in the mount namespace, under the
        chroot; the kernel lets a new procfs or sysfs be mounted (from a nested user
        namespace) if a full one is in the namespace. So, as runc does, every full proc and
        sysfs mount outside the rootfs is detached first (or covered, if we may not)."""
        with open("/proc/self/mountinfo") as f:
            points = full_proc_sys_mounts(f.read(), self.rootfs)
        for p in points:
            try:
                lm.mount(None, p, None, lm.MS_SLAVE | lm.MS_REC)
            except FileNotFoundError:
                continue  # below one already detached
            try:
                lm.umount2(p, lm.MNT_DETACH)
            except OSError as e:
                if e.errno not in (22, 1):
                    raise
                lm.mount("tmpfs", p, "tmpfs", 0)

    def finalize(self) -> None:
        """After pivot_root: sysctls, late read-only mounts, read-only and masked paths, a
        read-only root."""
        for k, v in (self.linux.get("sysctl") or {}).items():
            p = "/proc/sys/" + k.replace(".", "/")
            try:
                fd = os.open(p, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError as e:
                raise RootfsError(f"sysctl {k}: {e.strerror}") from e
            try:
                os.write(fd, v.encode())
            except OSError as e:
                raise RootfsError(f"sysctl {k}={v}: {e.strerror}") from e
            finally:
                os.close(fd)
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for dest, flags in self.late_ro:
                fd = open_in_root(root, dest)
                try:
                    self.remount(self.real(fd), flags | lm.MS_RDONLY)
                finally:
                    os.close(fd)
            for p in self.linux.get("readonlyPaths") or ():
                try:
                    fd = open_in_root(root, p)
                except FileNotFoundError:
                    continue
                try:
                    real = self.real(fd)
                    lm.mount(real, real, None, lm.MS_BIND | lm.MS_REC)
                    self.remount(real, lm.MS_RDONLY)
                finally:
                    os.close(fd)
            for p in self.linux.get("maskedPaths") or ():
                try:
                    fd = open_in_root(root, p)
                except FileNotFoundError:
                    continue
                try:
                    real = self.real(fd)
                    if os.path.isdir(real):
                        lm.mount("tmpfs", real, "tmpfs", lm.MS_RDONLY)
                    else:
                        lm.mount("/dev/null", real, None, lm.MS_BIND)
                finally:
                    os.close(fd)
        finally:
            os.close(root)
        if (self.cfg.get("root") or {}).get("readonly"):
            self.remount("/", lm.MS_RDONLY)
