"""The ``workbench`` command (also ``python -m workbench``).

Every command runs under ``workbench.processes.supervised``: SIGTERM, SIGINT and SIGHUP stop it
cleanly (the processes it started end with it) and it exits with ``128 + signal``.
"""
from __future__ import annotations

import argparse
import sys

import workbench as wb
from workbench import processes
from workbench.registry import OPTION_KINDS
from workbench.serve import REFILL_DELAY_S


def _methods(args: argparse.Namespace) -> int:
    for name in wb.methods():
        method = wb.method_info(name)
        print(f"{name}: {method.description} ({method.reference})")
        if method.requires is not None:
            print(f"    applies to {method.requires.description} only")
        for option in method.options:
            print(f"    {option.name} [{option.kind}] = {option.default!r}: {option.help}")
    print("option kinds:")
    for kind in OPTION_KINDS.values():
        print(f"    {kind.name}: {kind.accepts}")
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
        records = reproduce(args.notebooks, args.out, dict(args.parameter or []), args.smoke,
                            args.seeds)
    except (NotebookFailed, FileNotFoundError, ValueError) as error:
        print(f"workbench reproduce: {error}", file=sys.stderr)
        return 1
    for record in records:
        print(f"{record.notebook}: ok in {record.seconds:.1f} s -> {record.output_dir}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from workbench.runner import notebooks, parameters_of, parse_value
    from workbench.sweep import sweep

    try:
        declared = parameters_of(notebooks([args.notebook])[0])
        fixed = {name: parse_value(declared, name, value) if name in declared else value
                 for name, value in args.parameter or []}  # sweep names unknown ones
        table = sweep(args.notebook, args.grid or [], out=args.out, scheduler=args.scheduler,
                      workers=args.workers, retries=args.retries, smoke=args.smoke,
                      parameters=fixed)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"workbench sweep: {error}", file=sys.stderr)
        return 1
    failed = table[~table["ok"]]
    print(f"{len(table) - len(failed)} of {len(table)} points ok "
          f"({int(table['resumed'].sum())} resumed) -> {args.out}/sweep.csv")
    for _, row in failed.iterrows():
        print(f"failed: {row['point']}: {row['error']} (cell {row['failed_cell']})",
              file=sys.stderr)
    return 1 if len(failed) else 0


def _serve(args: argparse.Namespace) -> int:
    from workbench.serve import serve

    return serve(args.notebook, ip=args.ip, port=args.port, token=args.token,
                 cull_idle_timeout=args.cull_idle_timeout, cull_interval=args.cull_interval,
                 open_browser=args.open_browser, preheat=args.preheat,
                 refill_delay=args.refill_delay)


def _audit(args: argparse.Namespace) -> int:
    from workbench.auditing import specs
    from workbench.claims import parse_seeds
    from workbench.reporting import smoke_requested

    try:
        model, model_line = specs.load_model(args.model, args.weights)
        data = specs.load_data(args.data, size=args.size)
        seeds = parse_seeds(args.seeds)
        inputs = data.inputs[:args.images] if args.images else data.inputs
        budget = args.budget
        if smoke_requested(args.smoke):
            budget, seeds = "smoke", seeds[:2]
        result = wb.audit(model, inputs, args.methods, seeds=seeds, budget=budget,
                          out=args.out, description={"model": model_line, "data": data.source})
    except (FileNotFoundError, ValueError, TypeError) as error:
        print(f"workbench audit: {error}", file=sys.stderr)
        return 1
    counts = result.verdicts["status"].str.replace(" (1 seed)", "").value_counts()
    print(", ".join(f"{count} {status}" for status, count in counts.items())
          + f" -> {args.out}/report.html")
    return 0


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
    reproduce.add_argument("--seeds", help="seeds every claim is measured at, e.g. 0,1,2 "
                           "(sets each notebook's 'seeds' parameter)")

    sweep = commands.add_parser("sweep", help="run a notebook over a parameter grid on Dask")
    sweep.add_argument("notebook", help="notebook name or path")
    sweep.add_argument("--grid", action="append", metavar="NAME=VALUES",
                       help="a grid parameter: NAME=v1,v2,... or NAME=a..b (integers); repeat "
                            "for more (every combination runs)")
    sweep.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                       help="a parameter fixed for every point")
    sweep.add_argument("--scheduler", default="local",
                       help="'local' (a LocalCluster on 127.0.0.1), a scheduler address "
                            "(tcp://host:8786), 'slurm' or 'pbs' (dask-jobqueue)")
    sweep.add_argument("--workers", type=int, default=2, help="worker processes to start")
    sweep.add_argument("--retries", type=int, default=1, help="extra attempts per failed point")
    sweep.add_argument("--smoke", action="store_true", help="fast smoke-test parameters")
    sweep.add_argument("--out", default="output/sweep", help="output folder (resumable)")

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
    serve.add_argument("--preheat", type=int, default=0, metavar="N",
                       help="kernels per notebook kept running ahead with the notebook executed, "
                            "so that a page opens at once (default 0: none)")
    serve.add_argument("--refill-delay", type=float, default=REFILL_DELAY_S, metavar="S",
                       help="with --preheat: seconds before a kernel a page took is replaced, "
                            "so that the replacement's run does not slow the pages opening "
                            f"(default {REFILL_DELAY_S:.0f})")

    audit = commands.add_parser("audit", help="test attribution methods on a model and data: "
                                "sanity checks, Sensitivity-n, completeness, agreement")
    audit.add_argument("--model", required=True,
                       help="a zoo name, torchvision:NAME (with --weights), a TorchScript file "
                            "or package.module:factory (with --weights for a state dict)")
    audit.add_argument("--weights", help="a state dict file (read with weights_only=True)")
    audit.add_argument("--data", required=True,
                       help="a zoo name, an image folder root/<class>/<image>, or a .pt/.npz "
                            "file of images (N, C, H, W)")
    audit.add_argument("--size", type=int, default=224, help="image side for an image folder")
    audit.add_argument("--images", type=int, help="use only the first N images")
    audit.add_argument("--methods", nargs="+", help="method names (default: "
                       "gradient, gradient_x_input, integrated_gradients, guided_backprop, "
                       "grad_cam, lrp_epsilon, deeplift_rescale)")
    audit.add_argument("--budget", choices=("quick", "full"), default="quick")
    audit.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    audit.add_argument("--out", default="output/audit", help="output folder")
    audit.add_argument("--smoke", action="store_true",
                       help="fast settings (4 images, 2 seeds, 2 stages per test)")

    args = parser.parse_args(argv)
    handlers = {"methods": _methods, "demo": _demo, "reproduce": _reproduce, "sweep": _sweep,
                "serve": _serve, "audit": _audit}
    return processes.run(lambda: handlers[args.command](args), f"workbench {args.command}")


if __name__ == "__main__":
    sys.exit(main())
