"""The ``workbench`` command (also ``python -m workbench``)."""
from __future__ import annotations

import argparse
import sys

import workbench as wb


def _methods(args: argparse.Namespace) -> int:
    for name in wb.methods():
        method = wb.method_info(name)
        print(f"{name}: {method.description} ({method.reference})")
        for option in method.options:
            print(f"    {option.name} [{option.kind}] = {option.default!r}: {option.help}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from workbench import demo

    results = demo.run(args.out, smoke=args.smoke)
    print(f"wrote {args.out}/heatmaps.html and results.json; completeness errors: "
          f"{results['completeness_error (max |sum attr - (f(x) - f(0))|)']}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from workbench.runner import NotebookFailed, reproduce

    try:
        records = reproduce(args.notebooks, args.out, dict(args.parameter or []), args.smoke)
    except (NotebookFailed, FileNotFoundError, ValueError) as error:
        print(f"workbench reproduce: {error}", file=sys.stderr)
        return 1
    for record in records:
        print(f"{record.notebook}: ok in {record.seconds:.1f} s -> {record.output_dir}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from workbench.serve import serve

    return serve(args.notebook, ip=args.ip, port=args.port, token=args.token,
                 cull_idle_timeout=args.cull_idle_timeout, cull_interval=args.cull_interval,
                 open_browser=args.open_browser)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description="Explainability Workbench")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("methods", help="list the attribution methods and their options")

    demo = commands.add_parser("demo", help="explain digits with every method, write a figure")
    demo.add_argument("--out", default="output/demo", help="output folder")
    demo.add_argument("--smoke", action="store_true", help="fast settings")

    reproduce = commands.add_parser("reproduce", help="run the paper notebooks with papermill")
    reproduce.add_argument("notebooks", nargs="*", help="notebook names or paths (default: all)")
    reproduce.add_argument("-p", "--parameter", nargs=2, action="append",
                           metavar=("NAME", "VALUE"), help="set a notebook parameter")
    reproduce.add_argument("--smoke", action="store_true", help="fast smoke-test parameters")
    reproduce.add_argument("--out", default="output", help="output folder")

    serve = commands.add_parser("serve", help="serve the notebooks as apps with Voila")
    serve.add_argument("notebook", nargs="?", help="one notebook (default: the notebook tree)")
    serve.add_argument("--ip", default="127.0.0.1",
                       help="address to bind (anything but loopback requires a token)")
    serve.add_argument("--port", type=int, default=8866)
    serve.add_argument("--token", help="access token (generated when binding a public address)")
    serve.add_argument("--cull-idle-timeout", type=int, default=600,
                       help="seconds before an idle kernel is shut down")
    serve.add_argument("--cull-interval", type=int, default=60,
                       help="seconds between checks for idle kernels")
    serve.add_argument("--open-browser", action="store_true")

    args = parser.parse_args(argv)
    handlers = {"methods": _methods, "demo": _demo, "reproduce": _reproduce, "serve": _serve}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
