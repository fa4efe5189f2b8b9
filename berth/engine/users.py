"""``--user name|uid[:group|gid]`` resolved against the container's own /etc/passwd and
/etc/group, as Docker (moby/sys/user) resolves it.

- a name must be in the image's passwd file, a number need not be (its primary group is then
  0, or the passwd entry's when there is one);
- the supplementary groups are the primary group (Docker lists it, so ``id`` shows
  ``groups=0(root)``), those of /etc/group that list the user by name, plus ``--group-add``
  (names looked up, numbers taken as they are);
- HOME is the passwd entry's home directory, ``/`` when there is none.

The files are read with berth.engine.rootpath, inside the rootfs: a symlinked /etc/passwd
cannot make berth read the host's.
"""

from __future__ import annotations

from berth.errors import InvalidArgument

from . import rootpath

MAX_ID = 2147483647


class NoSuchUser(InvalidArgument):
    pass


def _entries(root: str, path: str, fields: int) -> list[list[str]]:
    data = rootpath.read_file(root, path)
    if data is None:
        return []
    out = []
    for line in data.decode(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < fields:
            parts += [""] * (fields - len(parts))
        out.append(parts)
    return out


def _num(text: str) -> int | None:
    if text.isdigit():
        v = int(text)
        if v > MAX_ID:
            raise InvalidArgument("uids and gids must be in range 0-2147483647")
        return v
    if text.startswith("-") and text[1:].isdigit():
        raise InvalidArgument("uids and gids must be in range 0-2147483647")
    return None


def resolve(root: str, user: str, group_add: list[str] | None = None
            ) -> tuple[int, int, list[int], str]:
    """→ (uid, gid, additional gids, home)."""
    name, _, group = (user or "").partition(":")
    passwd = _entries(root, "/etc/passwd", 7)
    groups = _entries(root, "/etc/group", 4)
    uid, gid, home, uname = 0, 0, "/", "root"
    found = None
    if not name:
        found = next((p for p in passwd if p[2] == "0"), None)
        if found is None:
            found = next((p for p in passwd if p[0] == "root"), None)
    else:
        n = _num(name)
        if n is None:
            found = next((p for p in passwd if p[0] == name), None)
            if found is None:
                raise NoSuchUser(f"unable to find user {name}: no matching entries in passwd "
                                 "file")
        else:
            uid = n
            found = next((p for p in passwd if p[2] == name), None)
            uname = ""
    if found is not None:
        uname = found[0]
        try:
            uid = int(found[2])
            gid = int(found[3]) if found[3] else 0
        except ValueError:
            pass
        home = found[5] or "/"
    if group:
        g = _num(group)
        if g is None:
            ent = next((e for e in groups if e[0] == group), None)
            if ent is None:
                raise NoSuchUser(f"unable to find group {group}: no matching entries in group "
                                 "file")
            gid = int(ent[2]) if ent[2].isdigit() else 0
        else:
            gid = g
    extra: list[int] = [gid]
    if not group and uname:
        for e in groups:
            if uname in [m for m in e[3].split(",") if m] and e[2].isdigit():
                g = int(e[2])
                if g not in extra:
                    extra.append(g)
    for ga in group_add or []:
        g = _num(ga)
        if g is None:
            ent = next((e for e in groups if e[0] == ga), None)
            if ent is None:
                raise NoSuchUser(f"unable to find group {ga}: no matching entries in group file")
            g = int(ent[2]) if ent[2].isdigit() else 0
        if g not in extra:
            extra.append(g)
    return uid, gid, extra, home
