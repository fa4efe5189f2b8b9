"""``berth registry serve|gc``: the registry server's command line.

``serve`` prints one line, ``berth registry listening on URL``, once the socket is bound (with
``--addr HOST:0`` the URL carries the port the kernel chose), then serves until SIGINT or
SIGTERM. ``gc`` refuses to run while a server holds the root.
"""

import argparse
import asyncio
import os
import shutil
import signal
import sys

from berth.errors import BerthError


def _addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"invalid address {text!r} (want HOST:PORT)")
    return host.strip("[]") or "0.0.0.0", int(port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth registry", description="berth's registry server")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the OCI Distribution API")
    s.add_argument("--addr", type=_addr, default=("127.0.0.1", 5000), help="HOST:PORT to bind")
    s.add_argument("--root", required=True, help="storage directory")
    s.add_argument("--htpasswd", help="htpasswd file (bcrypt): require Basic auth")
    s.add_argument("--auth", choices=("none", "basic", "token"), default=None,
                   help="auth mode (default: basic if --htpasswd, else none)")
    s.add_argument("--token-realm", help="realm URL to announce (default: this server's /token)")
    s.add_argument("--service", default="berth-registry", help="token service name")
    s.add_argument("--anonymous-pull", action="store_true",
                   help="with token auth, let anonymous clients pull")
    s.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    s.add_argument("--tls-key", help="PEM private key for --tls-cert")
    s.add_argument("--access-log", help="write one line per request to FILE ('-': stderr)")
    s.add_argument("--no-delete", action="store_true", help="refuse DELETE requests")
    s.add_argument("--no-fsync", action="store_true",
                   help="do not fsync blobs (faster; a crash may lose recent pushes)")
    g = sub.add_parser("gc", help="delete blobs no manifest references")
    g.add_argument("--root", required=True)
    g.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    g.add_argument("--delete-untagged", action="store_true",
                   help="also delete manifests that no tag reaches")
    return p


async def _serve(args) -> int:
    from berth.distribution.server.app import Registry, bound_port, serve
    from berth.distribution.server.storage import Storage

    ssl_context = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise BerthError("--tls-cert and --tls-key go together")
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise BerthError(f"cannot load TLS certificate {args.tls_cert}: {e}") from None
    mode = args.auth or ("basic" if args.htpasswd else "none")
    if mode == "basic" and not args.htpasswd:
        raise BerthError("--auth basic needs --htpasswd")
    if mode == "token" and not args.htpasswd and not args.anonymous_pull:
        raise BerthError("--auth token needs --htpasswd (its users) or --anonymous-pull")
    if args.htpasswd and mode != "none":
        from berth.distribution.server.auth import Htpasswd

        Htpasswd(args.htpasswd)  # a missing or unreadable file fails here, before the root
    # bad settings or a busy port leave no new, empty registry root behind
    made = not os.path.exists(args.root)
    try:
        storage = Storage(args.root, sync=not args.no_fsync)
        storage.lock()
        registry = Registry(storage, htpasswd=args.htpasswd if mode != "none" else None,
                            token_auth=mode == "token", realm=args.token_realm,
                            service=args.service,
                            anonymous=("pull",) if args.anonymous_pull else (),
                            delete=not args.no_delete)
        host, port = args.addr
        try:
            runner = await serve(registry, host, port, ssl_context=ssl_context,
                                 access_log=args.access_log)
        except OSError as e:
            raise BerthError(f"cannot listen on {host}:{port}: "
                             f"{os.strerror(e.errno).lower() if e.errno else e}") from None
    except BaseException:
        if made:
            shutil.rmtree(args.root, ignore_errors=True)
        raise
    scheme = "https" if ssl_context else "http"
    shown = f"[{host}]" if ":" in host else host
    print(f"berth registry listening on {scheme}://{shown}:{bound_port(runner)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        storage.unlock()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.cmd == "serve":
            return asyncio.run(_serve(args))
        from berth.distribution.server import gc
        from berth.distribution.server.storage import Storage

        res = gc.collect(Storage(args.root, create=False),
                         delete_untagged=args.delete_untagged, dry_run=args.dry_run)
        print(gc.report(res, args.dry_run))
        return 0
    except BerthError as e:
        print(f"berth registry: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"berth registry: {e}", file=sys.stderr)
        return 1
