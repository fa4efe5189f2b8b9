"""Garbage collection of a registry root: mark from manifests, sweep unreferenced blobs.

Run as a command while no server uses the root (it takes the root's lock exclusively and
refuses otherwise, so an upload in flight can never lose a blob its manifest is about to
name). Roots are the manifest revisions of every repository; with ``delete_untagged``, only
tagged manifests, the manifests their indexes name, and referrers of kept manifests are roots,
and the other revisions are deleted first. Marked: each kept manifest and its config and
layers. Swept: every other blob, every repository link to a swept blob, and every upload
session (none can be live under the exclusive lock).
"""

import json
import os
import shutil
from dataclasses import dataclass, field

from berth.distribution import media
from berth.distribution.server.storage import Storage
from berth.errors import InvalidArgument

__all__ = ["GcResult", "collect"]


@dataclass
class GcResult:
    blobs_deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    manifests_deleted: list[str] = field(default_factory=list)
    uploads_deleted: int = 0


def _revisions(storage: Storage, repo: str) -> list[str]:
    base = os.path.join(storage.root, "repositories", repo, "_manifests")
    out = []
    for alg in sorted(os.listdir(base)) if os.path.isdir(base) else ():
        out += [f"{alg}:{h}" for h in sorted(os.listdir(os.path.join(base, alg)))
                if not h.startswith(".")]
    return out


def _parse(storage: Storage, digest: str) -> media.Manifest | None:
    try:
        with open(storage.blob_path(digest), "rb") as f:
            return media.parse_manifest(f.read())
    except (OSError, InvalidArgument):
        return None


def collect(storage: Storage, *, delete_untagged: bool = False,
            dry_run: bool = False) -> GcResult:
    storage.lock(exclusive=True)
    try:
        return _collect(storage, delete_untagged, dry_run)
    finally:
        storage.unlock()


def _collect(storage: Storage, delete_untagged: bool, dry_run: bool) -> GcResult:
    res = GcResult()
    marked: set[str] = set()
    for repo in storage.repositories():
        revisions = _revisions(storage, repo)
        parsed = {d: _parse(storage, d) for d in revisions}
        keep = set(revisions)
        if delete_untagged:
            keep = set()
            todo = [storage.resolve(repo, t) for t in storage.tags(repo)]
            while todo:
                d = todo.pop()
                if d in keep or d not in parsed:
                    continue
                keep.add(d)
                m = parsed[d]
                if m is not None:
                    todo += [c.digest for c in m.manifests]
                # referrers of a kept manifest stay with it
                todo += [x for x, mx in parsed.items()
                         if mx is not None and mx.subject is not None and mx.subject.digest == d]
        for d in revisions:
            if d not in keep:
                res.manifests_deleted.append(f"{repo}@{d}")
                if not dry_run:
                    storage.delete_manifest(repo, d)
                continue
            marked.add(d)
            m = parsed[d]
            if m is not None:
                marked.update(b.digest for b in m.blobs())
    blobs = os.path.join(storage.root, "blobs")
    for alg in sorted(os.listdir(blobs)):
        for h in sorted(os.listdir(os.path.join(blobs, alg))):
            d = f"{alg}:{h}"
            if d in marked or h.startswith("."):
                continue
            p = os.path.join(blobs, alg, h)
            res.blobs_deleted.append(d)
            res.bytes_freed += os.stat(p).st_size
            if not dry_run:
                os.unlink(p)
    if dry_run:
        return res
    gone = set(res.blobs_deleted)
    for repo in storage.repositories():
        base = os.path.join(storage.root, "repositories", repo, "_layers")
        for alg in os.listdir(base) if os.path.isdir(base) else ():
            for h in os.listdir(os.path.join(base, alg)):
                if f"{alg}:{h}" in gone:
                    os.unlink(os.path.join(base, alg, h))
    uploads = os.path.join(storage.root, "uploads")
    for u in os.listdir(uploads):
        shutil.rmtree(os.path.join(uploads, u), ignore_errors=True)
        res.uploads_deleted += 1
    return res


def report(res: GcResult, dry_run: bool) -> str:
    verb = "would delete" if dry_run else "deleted"
    lines = [f"{verb} manifest {m}" for m in res.manifests_deleted]
    lines += [f"{verb} blob {b}" for b in res.blobs_deleted]
    lines.append(json.dumps({"blobs": len(res.blobs_deleted), "bytes": res.bytes_freed,
                             "manifests": len(res.manifests_deleted),
                             "uploads": res.uploads_deleted}))
    return "\n".join(lines)
