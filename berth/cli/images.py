"""Image commands: images/ls, tag, rmi, load, save, import, history, inspect, prune."""

from __future__ import annotations

import sys
import time

from berth import fastjson

from .client import APIError
from .common import Spec, stream_json
from .flags import Flag, UsageError
from .format import go_json, human_duration, human_size, render
from .system import parse_filter_flags

IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                 "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}


def _short_id(image_id: str, no_trunc: bool = False) -> str:
    if no_trunc:
        return image_id
    return image_id.split(":", 1)[-1][:12]


def _created_at(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(ts))


def _split_repo_tag(ref: str) -> tuple[str, str]:
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, ""


def image_rows(images: list[dict], digests: bool, no_trunc: bool) -> list[dict]:
    """One row per repository:tag, as docker's image formatter builds them."""
    rows = []
    now = time.time()
    for img in images:
        tags: dict[str, list[str]] = {}
        dgs: dict[str, list[str]] = {}
        for rt in img.get("RepoTags") or []:
            if rt == "<none>:<none>":
                continue
            repo, tag = _split_repo_tag(rt)
            tags.setdefault(repo, []).append(tag)
        for rd in img.get("RepoDigests") or []:
            if rd == "<none>@<none>":
                continue
            repo, _, d = rd.partition("@")
            dgs.setdefault(repo, []).append(d)
        created = img.get("Created", 0)
        base = {
            "ID": _short_id(img["Id"], no_trunc),
            "CreatedSince": human_duration(now - created) + " ago" if created else "N/A",
            "CreatedAt": _created_at(created),
            "Size": human_size(img.get("Size", 0)),
            "VirtualSize": human_size(img.get("VirtualSize", img.get("Size", 0))),
            "SharedSize": "N/A" if img.get("SharedSize", -1) < 0
            else human_size(img["SharedSize"]),
            "UniqueSize": "N/A" if img.get("SharedSize", -1) < 0
            else human_size(img.get("Size", 0) - img["SharedSize"]),
            "Containers": "N/A" if img.get("Containers", -1) < 0 else str(img["Containers"]),
        }
        if not tags and not dgs:
            rows.append({**base, "Repository": "<none>", "Tag": "<none>", "Digest": "<none>"})
            continue
        for repo in list(tags) + [r for r in dgs if r not in tags]:
            rtags = tags.get(repo) or ["<none>"]
            rdigests = dgs.get(repo) or []
            for tag in rtags:
                if digests and rdigests and tag == "<none>":
                    for d in rdigests:
                        rows.append({**base, "Repository": repo, "Tag": tag, "Digest": d})
                    continue
                rows.append({**base, "Repository": repo, "Tag": tag,
                             "Digest": rdigests[0] if rdigests else "<none>"})
            if not digests and repo not in tags:
                # untagged but digested: one row with <none> tag
                pass
    return rows


def ls(ctx, argv) -> int:
    spec = Spec("berth images [OPTIONS] [REPOSITORY[:TAG]]", "List images", [
        Flag("-a,--all", help="Show all images (default hides intermediate images)"),
        Flag("--digests", help="Show digests"),
        Flag("-f,--filter", "list", help="Filter output based on conditions provided"),
        Flag("--format", "str", help="Format output using a custom template"),
        Flag("--no-trunc", help="Don't truncate output"),
        Flag("-q,--quiet", help="Only show image IDs"),
        Flag("--tree", help="List multi-platform images as a tree (EXPERIMENTAL)"),
    ], 0, 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, args = parsed
    filters = parse_filter_flags(opts["filter"])
    if args:
        filters.setdefault("reference", []).append(args[0])
    query = {"all": "1" if opts["all"] else None}
    if filters:
        query["filters"] = fastjson.dumps(filters)
    images = ctx.client.get_json("/images/json", query) or []
    images.sort(key=lambda i: i.get("Created", 0), reverse=True)
    rows = image_rows(images, opts["digests"], opts["no_trunc"])
    fmt = opts["format"]
    if opts["quiet"]:
        fmt = "{{.ID}}"
    elif not fmt or fmt == "table":
        if opts["digests"]:
            fmt = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}"
                   "\t{{.Size}}")
        else:
            fmt = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    elif fmt == "json":
        fmt = "{{json .}}"
    ctx.out.write(render(fmt, rows, IMAGE_HEADERS))
    return 0


COMMANDS = {"ls": ls}
_unused = (APIError, UsageError, go_json, stream_json, sys)
