"""``ioaware app``: start the local what-if web app (Dash; the optional extra ``ioaware[app]``)."""

from __future__ import annotations

import argparse

from costmodel.cli.args import CommandError, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="local web app: pick a GPU, model, phase and shape; see time, memory, roofline",
                       description="Serve the what-if web app on http://HOST:PORT (needs: pip install 'ioaware[app]').")
    p.add_argument("--port", type=positive_int, default=8050, help="port to listen on (default 8050)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--debug", action="store_true", help="Dash's debug mode (reloads on code changes)")
    p.set_defaults(func=cmd_app)


def cmd_app(args):
    from costmodel.app import DASH_MISSING, serve

    if args.port > 65535:
        raise CommandError(f"--port: {args.port} is out of range; 1 to 65535 is accepted")
    try:
        import dash  # noqa: F401
    except ImportError:
        raise CommandError(DASH_MISSING) from None
    url = f"http://{args.host}:{args.port}/"
    if not args.json:
        print(f"ioaware app on {url} (Ctrl-C stops it)", flush=True)
    serve(port=args.port, host=args.host, debug=args.debug)
    return {"url": url, "stopped": True}, "stopped"
