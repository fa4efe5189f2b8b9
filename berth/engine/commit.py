"""``docker commit``: a container's writable layer becomes a new image layer.

The upper directory of the container's overlay is written as a layer tar in the format images
use (overlay's whiteouts — a 0/0 character device, the ``trusted.overlay.opaque`` xattr —
become ``.wh.<name>`` and ``.wh..wh..opq`` entries), stored as a blob, unpacked as the
committed snapshot on top of the image's chain, and a new image config is made from the
image's: the container's config (with ``--change`` and the request's overrides), one more
diffID and one more history entry. Mount points of the container (its /etc files, volumes)
are left out of the layer, as Docker leaves them out.

The container is paused while its layer is read unless asked otherwise (Docker's default).
"""

from __future__ import annotations

import os
import stat
import time

from berth.errors import InvalidArgument

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def write_layer(upper: str, skip: set[str], write) -> None:
    """A tar of ``upper`` (host paths read with lstat only) with Docker's whiteouts."""
    import tarfile

    class _W:
        def write(self, b):
            write(b)
            return len(b)

    tar = tarfile.open(fileobj=_W(), mode="w|", format=tarfile.PAX_FORMAT)
    tarfile.pwd = None  # numeric owners only: names are the image's business
    tarfile.grp = None
    try:
        for root, dirs, files in os.walk(upper):
            dirs.sort()
            rel_root = os.path.relpath(root, upper)
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                rel = os.path.normpath(os.path.join(rel_root, name))
                if "/" + rel in skip:
                    if name in dirs:
                        dirs.remove(name)
                    continue
                st = os.lstat(full)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    ti = tarfile.TarInfo(os.path.join(os.path.dirname(rel), WHITEOUT + name))
                    ti.mtime = int(st.st_mtime)
                    tar.addfile(ti)
                    continue
                ti = tar.gettarinfo(full, arcname=rel)
                ti.uname = ti.gname = ""
                if ti.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)
                if stat.S_ISDIR(st.st_mode):
                    try:
                        opaque = os.getxattr(full, "trusted.overlay.opaque",
                                             follow_symlinks=False)
                    except OSError:
                        opaque = b""
                    if opaque == b"y":
                        wo = tarfile.TarInfo(os.path.join(rel, OPAQUE))
                        wo.mtime = int(st.st_mtime)
                        tar.addfile(wo)
    finally:
        tar.close()


def commit(service, c, repo: str, tag: str, comment: str, author: str,
           changes: list[str], overrides: dict) -> dict:
    """Blocking: build the layer and the image; → {"Id": image id}."""
    from berth.engine import images as img_mod
    from berth.image import reference as refs
    from berth.image.store import chain_ids

    images = service.engine.images
    store = images.store
    parent_id = c.rec["Image"]
    parent = store.get(parent_id)
    parent_cfg = store.config(parent_id)
    ref = None
    if repo:
        ref = refs.parse(f"{repo}:{tag}" if tag else repo)
        if ref.digest:
            raise InvalidArgument("cannot commit with a digest reference")
        ref = ref.with_default_tag()
    elif tag:
        raise InvalidArgument("tag requires a repository")
    changed = img_mod.parse_changes(changes)
    snaps = store.snapshots
    upper = snaps.dir_of(c.rec["SnapshotKey"])
    skip = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv"}
    skip |= {p["Destination"] for p in c.rec.get("MountPoints", [])}
    with store.lease() as lease:
        w = store.content.writer()
        try:
            write_layer(upper, skip, w.write)
            diff_id = w.commit()
        except BaseException:
            w.abort()
            raise
        lease.blobs.add(diff_id)
        size = store.content.size(diff_id)
        diffs = list(parent.get("diff_ids") or []) + [diff_id]
        chain = chain_ids(diffs)
        store.unpack(diff_id, diff_id, chain[-1], lease)
        store.link_chain(chain)
        cfg = dict(c.rec["Config"])
        image_cfg = {k: cfg.get(k) for k in ("Hostname", "Domainname", "User", "AttachStdin",
                                             "AttachStdout", "AttachStderr", "Tty",
                                             "OpenStdin", "StdinOnce", "Env", "Cmd", "Image",
                                             "Volumes", "WorkingDir", "Entrypoint", "OnBuild",
                                             "Labels")}
        for k in ("ExposedPorts", "StopSignal", "Healthcheck"):
            if cfg.get(k):
                image_cfg[k] = cfg[k]
        image_cfg["Image"] = parent_id
        for k, v in (overrides or {}).items():
            if k in image_cfg or k in ("ExposedPorts", "StopSignal", "Healthcheck"):
                image_cfg[k] = v
        image_cfg.update(changed)
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + \
            f".{time.time_ns() % 1_000_000_000:09d}Z"
        new = {k: v for k, v in parent_cfg.items()
               if k not in ("config", "container_config", "history", "rootfs", "created",
                            "container", "author", "comment")}
        new.update({"created": now, "container": c.id, "config": image_cfg,
                    "container_config": dict(c.rec["Config"]),
                    "rootfs": {"type": "layers", "diff_ids": diffs},
                    "history": list(parent_cfg.get("history") or []) + [
                        {"created": now, "author": author or "", "comment": comment or "",
                         "created_by": " ".join([c.rec["Path"], *c.rec["Args"]])}],
                    "docker_version": "berth", "architecture": parent_cfg.get("architecture",
                                                                                "amd64"),
                    "os": parent_cfg.get("os", "linux")})
        if author:
            new["author"] = author
        if comment:
            new["comment"] = comment
        layers = list(parent["layers"]) + [{"mediaType": img_mod.MT_OCI_LAYER, "digest": diff_id,
                                            "size": size}]
        cdigest = images.add_image(new, layers, chain, lease, ref)
    attrs = {"comment": comment, "imageID": cdigest, "imageRef": str(ref) if ref else "",
             **service._event_attrs(c)}
    service.events.publish("container", "commit", c.id, attrs)
    if ref is not None:
        service.events.publish("image", "tag", cdigest, {"name": ref.familiar()})
    return {"Id": cdigest}
