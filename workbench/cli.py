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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("methods", help="list the attribution methods and their options")
    for name, help_text in (("demo", "explain digits with every method and write a figure"),
                            ("reproduce", "run the main job (the demo until the paper notebooks "
                                          "exist)")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--out", default="output", help="output folder")
        command.add_argument("--smoke", action="store_true", help="fast settings")
    args = parser.parse_args(argv)
    handlers = {"methods": _methods, "demo": _demo, "reproduce": _demo}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
