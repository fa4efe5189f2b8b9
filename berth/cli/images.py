"""Image commands: images/ls, tag, rmi, load, save, import, history, inspect, prune."""

from __future__ import annotations

import sys
import time

from berth import fastjson

from .client import APIError
from .common import Spec, confirm, dump_json, go_html_safe, prune_call, stream_json
from .flags import Flag
from .format import ZERO_UNIX, go_rfc3339, go_time, human_duration, human_size, render
from .system import parse_filter_flags

IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                 "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}


def _short_id(image_id: str, no_trunc: bool = False) -> str:
    if no_trunc:
        return image_id
    return image_id.split(":", 1)[-1][:12]


# docker's history shows no age for a time before this (time.Date(2000, 1, 1, ...))
_HISTORY_EPOCH = 946684800
# docker's default images tables: an image with no creation time shows N/A
_CREATED = "{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}"


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
        created = img.get("Created", ZERO_UNIX)
        base = {
            "ID": _short_id(img["Id"], no_trunc),
            # docker's imageContext: empty for Go's zero time (the tables print N/A for it)
            "CreatedSince": "" if created == ZERO_UNIX else
            human_duration(now - created) + " ago",
            "CreatedAt": go_time(created),
            "Size": human_size(img.get("Size", 0)),
            # docker's formatter: Size with 3 significant digits, the others with 4
            "VirtualSize": human_size(img.get("VirtualSize", img.get("Size", 0)), 4),
            "SharedSize": "N/A" if img.get("SharedSize", -1) < 0
            else human_size(img["SharedSize"], 4),
            "UniqueSize": "N/A" if img.get("SharedSize", -1) < 0
            else human_size(img.get("Size", 0) - img["SharedSize"], 4),
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
    images = ctx.client.get_json("/images/json", query) or []  # newest first, as sent
    rows = image_rows(images, opts["digests"], opts["no_trunc"])
    fmt = opts["format"]
    if opts["quiet"]:
        fmt = "{{.ID}}"
    elif not fmt or fmt == "table":
        if opts["digests"]:
            fmt = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t" + _CREATED + \
                "\t{{.Size}}"
        else:
            fmt = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t" + _CREATED + "\t{{.Size}}"
    elif fmt == "json":
        fmt = "{{json .}}"
    ctx.out.write(render(fmt, rows, IMAGE_HEADERS, context="*formatter.imageContext"))
    return 0


def _check(r) -> None:
    if r.status >= 400:
        msg = r.error_message()
        r.close()
        raise APIError(r.status, msg)


def tag(ctx, argv) -> int:
    spec = Spec("berth tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", [], 2, 2)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    _, (src, target) = parsed
    repo, t = _split_repo_tag(target)
    if "@" in target:
        raise APIError(400, "refusing to create a tag with a digest reference")
    ctx.client.call("POST", f"/images/{src}/tag", {"repo": repo, "tag": t or None})
    return 0


def rm(ctx, argv) -> int:
    spec = Spec("berth rmi [OPTIONS] IMAGE [IMAGE...]", "Remove one or more images", [
        Flag("-f,--force", help="Force removal of the image"),
        Flag("--no-prune", help="Do not delete untagged parents"),
    ], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    status = 0
    for n in names:
        try:
            res = ctx.client.call("DELETE", f"/images/{n}", {
                "force": "1" if opts["force"] else None,
                "noprune": "1" if opts["no_prune"] else None})
        except APIError as e:
            ctx.err.write(f"Error response from daemon: {e.message}\n")
            status = 1
            continue
        for item in res or []:
            for k in ("Untagged", "Deleted"):
                if k in item:
                    ctx.out.write(f"{k}: {item[k]}\n")
    return status


def load(ctx, argv) -> int:
    spec = Spec("berth load [OPTIONS]", "Load an image from a tar archive or STDIN", [
        Flag("-i,--input", "str", help="Read from tar archive file, instead of STDIN"),
        Flag("-q,--quiet", help="Suppress the load output"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    if opts["input"]:
        try:
            f = open(opts["input"], "rb")
        except OSError as e:
            ctx.err.write(f"open {opts['input']}: {e.strerror.lower()}\n")
            return 1
    else:
        if sys.stdin.isatty():
            ctx.err.write("requested load from stdin, but stdin is empty\n")
            return 1
        f = sys.stdin.buffer
    with f:
        r = ctx.client.request("POST", "/images/load", {"quiet": "1" if opts["quiet"] else "0"},
                               body=f, headers={"Content-Type": "application/x-tar"})
    _check(r)
    try:
        return stream_json(ctx, r)
    finally:
        r.close()


def save(ctx, argv) -> int:
    spec = Spec("berth save [OPTIONS] IMAGE [IMAGE...]",
                "Save one or more images to a tar archive (streamed to STDOUT by default)", [
                    Flag("-o,--output", "str", help="Write to a file, instead of STDOUT"),
                    Flag("--platform", "str", help="Save only the given platform variant"),
                ], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    if not opts["output"] and sys.stdout.isatty():
        ctx.err.write("cowardly refusing to save to a terminal. Use the -o flag or redirect\n")
        return 1
    import os

    out = opts["output"]
    if out:
        # the docker CLI checks the path before it asks the daemon
        parent = os.path.dirname(os.path.normpath(out)) or "."
        if not os.path.exists(parent):
            ctx.err.write(f"failed to save image: invalid output path: stat {parent}: no such "
                          "file or directory\n")
            return 1
        if os.path.isdir(out):
            ctx.err.write("failed to save image: cannot write to a directory\n")
            return 1
    r = ctx.client.request("GET", "/images/get", {"names": names})
    _check(r)
    if out:
        tmp = os.path.join(os.path.dirname(out) or ".",
                           f".tmp-{os.path.basename(out)}{os.getpid()}")
        try:
            # 0600, as the docker CLI's temporary file leaves it
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            r.close()
            ctx.err.write(f"failed to save image: open {tmp}: {e.strerror.lower()}\n")
            return 1
    else:
        fd, tmp = 1, None
    try:
        while True:
            chunk = r.read_chunk()
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        if tmp:
            os.close(fd)
            fd = -1
            os.rename(tmp, out)
    except OSError as e:
        if isinstance(e, BrokenPipeError) and not tmp:
            raise  # stdout closed: main() exits quietly
        ctx.err.write(f"failed to save image: write {tmp or '/dev/stdout'}: "
                      f"{(e.strerror or str(e)).lower()}\n")
        return 1
    finally:
        r.close()
        if tmp and fd >= 0:
            os.close(fd)
            os.unlink(tmp)
    return 0


def import_(ctx, argv) -> int:
    spec = Spec("berth import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                "Import the contents from a tarball to create a filesystem image", [
                    Flag("-c,--change", "list", help="Apply Dockerfile instruction to the "
                         "created image"),
                    Flag("-m,--message", "str", help="Set commit message for imported image"),
                    Flag("--platform", "str", help="Set platform if server is multi-platform "
                         "capable"),
                ], 1, 2)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, args = parsed
    src = args[0]
    repo, t = ("", "")
    if len(args) > 1:
        repo, t = _split_repo_tag(args[1])
    if "://" in src:
        raise APIError(400, f"import from {src}: only a file or - is supported")
    if src == "-":
        f = sys.stdin.buffer
    else:
        try:
            f = open(src, "rb")
        except OSError as e:
            ctx.err.write(f"open {src}: {e.strerror.lower()}\n")
            return 1
    query = {"fromSrc": "-", "repo": repo or None, "tag": t or None,
             "message": opts["message"] or None, "platform": opts["platform"] or None,
             "changes": opts["change"] or None}
    with f:
        r = ctx.client.request("POST", "/images/create", query, body=f)
    _check(r)
    try:
        return stream_json(ctx, r)
    finally:
        r.close()


def history(ctx, argv) -> int:
    spec = Spec("berth history [OPTIONS] IMAGE", "Show the history of an image", [
        Flag("--format", "str", help="Format output using a custom template"),
        Flag("-H,--human", "bool", default=True, help="Print sizes and dates in human "
             "readable format"),
        Flag("--no-trunc", help="Don't truncate output"),
        Flag("-q,--quiet", help="Only show image IDs"),
    ], 1, 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, (name,) = parsed
    hist = ctx.client.get_json(f"/images/{name}/history")
    now = time.time()
    rows = []
    for h in hist:
        created_by = h.get("CreatedBy", "").replace("\t", " ")
        if not opts["no_trunc"] and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        hid = h["Id"]
        if hid != "<missing>":
            hid = _short_id(hid, opts["no_trunc"])
        created = h.get("Created", ZERO_UNIX)
        since = go_rfc3339(created)
        if opts["human"]:
            since = "N/A" if created <= _HISTORY_EPOCH else human_duration(now - created) + " ago"
        rows.append({
            "ID": hid,
            "CreatedSince": since,
            "CreatedAt": go_rfc3339(created),
            "CreatedBy": created_by,
            "Size": human_size(h.get("Size", 0)) if opts["human"] else str(h.get("Size", 0)),
            "Comment": h.get("Comment", ""),
        })
    fmt = opts["format"]
    if opts["quiet"]:
        fmt = "{{.ID}}"
    elif not fmt or fmt == "table":
        created = "{{.CreatedSince}}" if opts["human"] else "{{.CreatedAt}}"
        fmt = f"table {{{{.ID}}}}\t{created}\t{{{{.CreatedBy}}}}\t{{{{.Size}}}}\t{{{{.Comment}}}}"
    elif fmt == "json":
        fmt = "{{json .}}"
    headers = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
               "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
    ctx.out.write(render(fmt, rows, headers, context="*image.historyContext"))
    return 0


def inspect(ctx, argv, kind: str = "image") -> int:
    spec = Spec(f"berth {'image ' if kind == 'image' else ''}inspect [OPTIONS] IMAGE [IMAGE...]",
                "Display detailed information on one or more images", [
                    Flag("-f,--format", "str", help="Format output using a custom template"),
                    Flag("--type", "str", help="Return JSON for specified type"),
                    Flag("-s,--size", help="Display total file sizes"),
                ], 1)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, names = parsed
    tmpl = None
    if opts["format"] and opts["format"] != "json":
        from .format import Template, TemplateError, preformat

        try:
            tmpl = Template(preformat(opts["format"])[1], missing="error")
        except TemplateError as e:
            # the docker CLI exits 64 on a template that does not parse, before any request
            ctx.err.write(f"{e.prefix}{e.message}\n")
            return 64
    found = []
    missing = []  # printed after the output, as docker does
    for n in names:
        try:
            found.append(ctx.client.get_json(f"/images/{n}/json"))
        except APIError as e:
            missing.append(f"Error response from daemon: {e.message}\n")
    if opts["format"] == "json":
        # the daemon's JSON as it came (docker keeps its field order), HTML-safe as Go's
        ctx.out.write(go_html_safe(fastjson.dumps(found)) + "\n")
    elif tmpl is not None:
        out, errors = [], []
        for obj in found:
            # as the docker CLI: the typed struct first, the raw JSON map when that fails
            try:
                out.append(tmpl.render(_typed_inspect(obj)) + "\n")
                continue
            except TemplateError:
                pass
            try:
                out.append(tmpl.render(obj) + "\n")
            except TemplateError as e:
                errors.append(f"{e.prefix}{e.message}\n")
        if errors:
            # as docker: what was rendered is dropped, one line per failure
            ctx.out.write("\n")
            ctx.out.flush()
            ctx.err.write("".join(errors) + "".join(missing))
            return 1
        ctx.out.write("".join(out))
    else:
        ctx.out.write(dump_json(found) + "\n")
    if missing:
        ctx.out.flush()
        ctx.err.write("".join(missing))
        return 1
    return 0


# image.InspectResponse's Go maps (the rest of its objects are structs) and nil slices
_INSPECT_MAPS = frozenset({"Labels", "ExposedPorts", "Volumes", "Data"})
_INSPECT_SLICES = frozenset({"RepoTags", "RepoDigests", "Env", "Cmd", "Entrypoint", "OnBuild",
                             "Shell", "Layers", "Test"})


def _typed_inspect(v, key: str = ""):
    """The inspect JSON as docker's typed value: structs (``ID`` for ``Id``), nil slices that
    print ``[]``, nil maps ``map[]``, LastTagTime a time.Time."""
    from .gotemplate import GoNilMap, GoNilSlice, GoStruct, GoTime

    if isinstance(v, dict):
        if key in _INSPECT_MAPS:
            return {k: _typed_inspect(x) for k, x in v.items()}
        st = GoStruct((k, _typed_inspect(x, k)) for k, x in v.items())
        if "Id" in v:
            st.aliases, st.hidden = {"ID": "Id"}, frozenset({"Id"})
            st.defaults = {"Variant": "", "OsVersion": ""}
        elif key in ("Config", "ContainerConfig"):
            st.defaults = {"ExposedPorts": GoNilMap(), "Healthcheck": None, "ArgsEscaped": False,
                           "NetworkDisabled": False, "MacAddress": "", "StopSignal": "",
                           "StopTimeout": None, "Shell": GoNilSlice()}
        return st
    if v is None:
        if key in _INSPECT_SLICES:
            return GoNilSlice()
        return GoNilMap() if key in _INSPECT_MAPS else None
    if isinstance(v, list):
        return [_typed_inspect(x) for x in v]
    if key == "LastTagTime" and isinstance(v, str):
        return GoTime(v)
    return v


def inspect_any(ctx, argv) -> int:
    return inspect(ctx, argv, kind="any")


def prune(ctx, argv) -> int:
    spec = Spec("berth image prune [OPTIONS]", "Remove unused images", [
        Flag("-a,--all", help="Remove all unused images, not just dangling ones"),
        Flag("--filter", "list", help="Provide filter values (e.g. \"until=<timestamp>\")"),
        Flag("-f,--force", help="Do not prompt for confirmation"),
    ], 0, 0)
    parsed = spec.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, _ = parsed
    filters = parse_filter_flags(opts["filter"])
    filters["dangling"] = ["false" if opts["all"] else "true"]
    if not opts["force"] and not confirm(
            ctx, "WARNING! This will remove all images without at least one container "
            "associated to them." if opts["all"] else
            "WARNING! This will remove all dangling images."):
        return 0
    res = prune_call(ctx, "/images/prune", filters)
    deleted = res.get("ImagesDeleted") or []
    if deleted:
        ctx.out.write("Deleted Images:\n")
        for item in deleted:
            for k in ("Untagged", "Deleted"):
                if k in item:
                    ctx.out.write(f"{k.lower()}: {item[k]}\n")
        ctx.out.write("\n")
    ctx.out.write(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed', 0), 4)}\n")
    return 0


COMMANDS = {"ls": ls, "tag": tag, "rm": rm, "load": load, "save": save, "import": import_,
            "history": history, "inspect": inspect, "inspect_any": inspect_any, "prune": prune}
