"""Registry commands: pull, push, login, logout, and ``registry serve|gc``.

``pull``/``push`` are API calls (``POST /images/create?fromImage=``, ``POST
/images/{name}/push``) carrying the user's credentials from the docker config file in
``X-Registry-Auth``, as the docker CLI sends them; the answer is docker's JSON progress stream,
drawn by ``progress.Renderer``. ``login`` asks the daemon to check the credentials
(``POST /auth``) and then stores them in the config file; ``logout`` only edits the file.
``registry`` runs berth's registry server in this process (it is not a daemon call).
"""

from __future__ import annotations

import os
import sys

from .common import Spec
from .flags import Flag

HUB = "docker.io"


def _registry_of(name: str) -> str:
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return "docker.io" if first in ("index.docker.io", "registry-1.docker.io") else first
    return HUB


def _split(ref: str) -> tuple[str, str, str]:
    """(name, tag, digest) of a reference as the user typed it."""
    name, _, digest = ref.partition("@")
    tag = ""
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def _bad_reference(ctx, ref: str) -> bool:
    """The docker CLI parses a reference itself and says what is wrong before it asks the
    daemon (so a name like ``x:`` never becomes a Docker Hub lookup); so does this. Costs the
    import of the grammar (~25 ms) on pull and push only."""
    from berth.distribution.reference import InvalidReference, parse

    try:
        parse(ref)
    except InvalidReference as e:
        ctx.err.write(f"{e}\n")
        return True
    return False


def _auth_header(registry: str) -> dict:
    from berth.distribution import dockerconfig

    try:
        creds = dockerconfig.get(registry)
    except Exception:  # noqa: BLE001 - a broken config must not block an anonymous pull
        creds = None
    return {"X-Registry-Auth": dockerconfig.encode_registry_auth(creds, registry)}


def _full(name: str) -> str:
    """docker prints the fully qualified name after a pull: docker.io/library/busybox."""
    if _registry_of(name) != HUB:
        return name
    path = name.split("/", 1)[1] if name.startswith(("docker.io/", "index.docker.io/")) \
        else name
    return f"docker.io/{path}" if "/" in path else f"docker.io/library/{path}"


def _render(ctx, resp, quiet: bool):
    from .progress import Renderer

    tty = not quiet and hasattr(ctx.out, "isatty") and ctx.out.isatty()
    width = 80
    if tty:
        try:
            width = os.get_terminal_size(ctx.out.fileno()).columns or 80
        except OSError:
            pass
    r = Renderer(_Null() if quiet else ctx.out, tty, width)
    try:
        r.feed_lines(resp.lines())
    finally:
        resp.close()
    return r


class _Null:
    def write(self, s):
        pass

    def flush(self):
        pass


PULL = Spec("berth pull [OPTIONS] NAME[:TAG|@DIGEST]",
            "Download an image from a registry",
            [Flag("-a,--all-tags", help="Download all tagged images in the repository"),
             Flag("--platform", "str", help="Set platform if server is multi-platform capable"),
             Flag("-q,--quiet", help="Suppress verbose output"),
             Flag("--disable-content-trust", default=True, help="Skip image verification")],
            min_args=1, max_args=1)


def pull(ctx, argv: list[str]) -> int:
    parsed = PULL.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, (ref,) = parsed
    if _bad_reference(ctx, ref):
        return 1
    name, tag, digest = _split(ref)
    if opts["all_tags"] and (tag or digest):
        # as the docker CLI: a plain error, no usage hint
        ctx.err.write("tag can't be used with --all-tags/-a\n")
        return 1
    if not opts["all_tags"] and not tag and not digest:
        tag = "latest"
        if not opts["quiet"]:
            ctx.out.write("Using default tag: latest\n")
    query = {"fromImage": name}
    if digest or tag:
        query["tag"] = digest or tag
    if opts["platform"]:
        query["platform"] = opts["platform"]
    resp = ctx.client.request("POST", "/images/create", query,
                              headers=_auth_header(_registry_of(name)))
    if resp.status >= 400:
        from .client import APIError

        try:
            raise APIError(resp.status, resp.error_message())
        finally:
            resp.close()
    r = _render(ctx, resp, opts["quiet"])
    if r.errors:
        ctx.err.write(r.errors[-1] + "\n")
        return 1
    shown = _full(name) + (f"@{digest}" if digest else f":{tag}" if tag else "")
    ctx.out.write(shown + "\n")
    return 0


PUSH = Spec("berth push [OPTIONS] NAME[:TAG]", "Upload an image to a registry",
            [Flag("-a,--all-tags", help="Push all tags of an image to the repository"),
             Flag("-q,--quiet", help="Suppress verbose output"),
             Flag("--disable-content-trust", default=True, help="Skip image signing")],
            min_args=1, max_args=1)


def push(ctx, argv: list[str]) -> int:
    parsed = PUSH.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, (ref,) = parsed
    if _bad_reference(ctx, ref):
        return 1
    name, tag, digest = _split(ref)
    if digest:
        ctx.err.write("cannot push a digest reference\n")
        return 1
    if opts["all_tags"] and tag:
        ctx.err.write("tag can't be used with --all-tags/-a\n")
        return 1
    if not opts["all_tags"] and not tag:
        tag = "latest"
        if not opts["quiet"]:
            ctx.out.write("Using default tag: latest\n")
    query = {"tag": tag} if tag else {}
    resp = ctx.client.request("POST", f"/images/{name}/push", query,
                              headers=_auth_header(_registry_of(name)))
    if resp.status >= 400:
        from .client import APIError

        try:
            raise APIError(resp.status, resp.error_message())
        finally:
            resp.close()
    r = _render(ctx, resp, opts["quiet"])
    if r.errors:
        ctx.err.write(r.errors[-1] + "\n")
        return 1
    if opts["quiet"]:
        ctx.out.write(f"{name}:{tag}\n" if tag else f"{name}\n")
    return 0


LOGIN = Spec("berth login [OPTIONS] [SERVER]",
             "Log in to a registry.\nIf no server is specified, the default is defined by the "
             "daemon.",
             [Flag("-u,--username", "str", help="Username"),
              Flag("-p,--password", "str", help="Password"),
              Flag("--password-stdin", help="Take the password from stdin")],
             max_args=1)


def _server(args: list[str]) -> str:
    s = args[0] if args else HUB
    s = s.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    return HUB if s in ("index.docker.io", "registry-1.docker.io") else s


def login(ctx, argv: list[str]) -> int:
    parsed = LOGIN.parse(ctx, argv)
    if parsed is None:
        return 0
    opts, args = parsed
    server = _server(args)
    user, password = opts["username"], opts["password"]
    if opts["password_stdin"]:
        if password:
            ctx.err.write("conflicting options: cannot specify both --password and "
                          "--password-stdin\n")
            return 1
        if not user:
            ctx.err.write("the --password-stdin option requires --username to be set\n")
            return 1
        password = sys.stdin.read().rstrip("\r\n")
    elif password:
        ctx.err.write("WARNING! Using --password via the CLI is insecure. Use "
                      "--password-stdin.\n")
    if not user or not password:
        from berth.distribution import dockerconfig

        try:
            stored = dockerconfig.get(server)
        except Exception:  # noqa: BLE001 - a broken store only means nothing to reuse
            stored = None
        if not sys.stdin.isatty():
            if stored and not user and not password:
                user, password = stored.username, stored.password
            else:
                ctx.err.write("Error: Cannot perform an interactive login from a non TTY "
                              "device\n")
                return 1
        else:
            import getpass

            if not user:
                hint = f" ({stored.username})" if stored and stored.username else ""
                user = input(f"Username{hint}: ").strip() or (stored.username if stored else "")
            if not password:
                password = getpass.getpass("Password: ")
    if not user:
        ctx.err.write("Error: Non-null Username Required\n")
        return 1
    if not password:
        ctx.err.write("Error: Non-null Password Required\n")
        return 1
    ans = ctx.client.call("POST", "/auth", json={"username": user, "password": password,
                                                 "serveraddress": server})
    from berth.distribution import dockerconfig

    token = (ans or {}).get("IdentityToken") or None
    from berth.errors import BerthError

    try:
        path = dockerconfig.store(server, dockerconfig.Credentials(
            user, "" if token else password, token))
    except BerthError as e:
        ctx.err.write(f"Error saving credentials: {e}\n")
        return 1
    ctx.err.write(f"WARNING! Your credentials are stored unencrypted in '{path}'.\n"
                  "Configure a credential helper to remove this warning. See\n"
                  "https://docs.docker.com/go/credential-store/\n\n")
    ctx.out.write(((ans or {}).get("Status") or "Login Succeeded") + "\n")
    return 0


LOGOUT = Spec("berth logout [SERVER]",
              "Log out from a registry.\nIf no server is specified, the default is defined by "
              "the daemon.", [], max_args=1)


def logout(ctx, argv: list[str]) -> int:
    parsed = LOGOUT.parse(ctx, argv)
    if parsed is None:
        return 0
    _, args = parsed
    server = _server(args)
    from berth.distribution import dockerconfig

    # docker 28 says this whether or not it held credentials for the server
    dockerconfig.erase(server)
    ctx.out.write(f"Removing login credentials for {dockerconfig.key_for(server)}\n")
    return 0


def registry(ctx, argv: list[str]) -> int:
    from berth.distribution.server.main import main

    return main(argv)


COMMANDS = {"pull": pull, "push": push, "login": login, "logout": logout,
            "registry": registry}
