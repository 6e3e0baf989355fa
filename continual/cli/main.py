"""`continual fit|features|sweep|compare|config show|config keys`: argparse only at import, heavy modules loaded per command."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  continual fit                                   # Split-Digits, fine-tuning, task-IL
  continual fit --config split_mnist.yaml data.root=/data scenario=class
  continual config show seed=3 trainer.max_epochs=2
  continual config keys router                     # every router.* key: type, default, meaning
  continual features backbone.name=conv            # cache the extractor's features (then: continual fit ... data.features=true)
  continual sweep sweeps/router_grid_h_nv.yaml data.root=/data   # a W&B sweep file, no W&B server needed
  continual compare --config compare/vandeven2019_split_mnist.yaml data.root=/data
"""


class _FitHelp(argparse.Action):
    """`fit --help` names the methods, streams and backbones (importing them costs seconds, so only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from continual.config.load import config_dirs
        from continual.config.schema import SCENARIOS
        from continual.data.streams import STREAMS
        from continual.methods import builtin
        from continual.models.backbones import BACKBONES

        def plugins(registry) -> str:
            helps = registry.help()
            width = max(map(len, helps))
            return "".join(f"\n  {name:<{width}}  {text}" for name, text in helps.items()) + f"\n  or {registry.user} for your own"

        configs = sorted({p.name for d in config_dirs() if d.is_dir() for p in d.glob("*.yaml")})
        parser.epilog = (
            f"configs:   {', '.join(configs)} (--config NAME, from any folder)\n"
            f"methods:   {', '.join(builtin())}, or <module>:<Class> for your own\n"
            f"scenarios: {', '.join(SCENARIOS)} (scenario=...)\n"
            f"streams (data.stream=...; docs/streams.md):{plugins(STREAMS)}\n"
            f"backbones (backbone.name=...; docs/backbones.md):{plugins(BACKBONES)}\n"
            "every key with its type, default and meaning: continual config keys [prefix], e.g. continual config keys router\n"
            "the resolved config of a command: continual config show [--config FILE] [key=value ...]"
        )
        parser.print_help()
        parser.exit()


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=None, help="YAML config: a path, or the name of a shipped one (default: split_digits.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. seed=3")


class _Parser(argparse.ArgumentParser):
    """argparse with the platform's one-line errors (its own prints the usage block first)."""

    def error(self, message: str):
        print(f"continual: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _positive_int(text: str) -> int:
    """`--workers`: a positive integer, or argparse's one-line error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="continual",
        description="Continual multi-task learning on a frozen MLP with a task-signature attention router.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="train a method over a task stream and write a run directory", add_help=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("-h", "--help", action=_FitHelp, help="show this help (with the methods, scenarios, streams and backbones) and exit")
    _add_config_args(fit)
    sweep = sub.add_parser("sweep", help="run a W&B sweep file offline (no W&B server): runs, results table, offline W&B runs")
    sweep.add_argument("file", help="a W&B sweep YAML, e.g. sweeps/router_grid_h_nv.yaml")
    sweep.add_argument("--count", type=int, default=None, help="runs to do now (default: the whole grid; required for random/bayes)")
    sweep.add_argument("--dir", default=None, help="sweep directory (default: runs/sweep_<name>); an existing one is continued")
    sweep.add_argument("--seed", type=int, default=0, help="seed of the random search's draws")
    sweep.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="stop a trial (SIGTERM) that runs longer; it counts as failed")
    sweep.add_argument("--max-failures", type=int, default=3, metavar="N",
                       help="stop the sweep once N trials in a row failed with the same error (default 3; 0: never)")
    sweep.add_argument("--workers", type=_positive_int, default=1, metavar="N", help="trials at once, each in its own process with its share of the cores/GPUs (default 1)")
    sweep.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every trial, e.g. data.root=/data")
    cmp = sub.add_parser("compare", help="run a grid of methods x scenarios x seeds and tabulate it")
    cmp.add_argument("--config", "-c", required=True, help="compare YAML: a path, or a shipped one's name, e.g. compare/<name>.yaml")
    cmp.add_argument("--out", default=None, help="output folder (default: the config's 'out')")
    cmp.add_argument("--shard", default=None, metavar="I/N", help="run only every N-th cell from the I-th (split the grid over N processes sharing --out)")
    cmp.add_argument("--seeds", default=None, metavar="LIST", help="seeds instead of the config's, e.g. 0-19 or 0,3,5")
    cmp.add_argument("--only", default=None, metavar="CELLS", help="run only these rows, scenarios or row/scenario, comma-separated, e.g. none/domain,lwf/class")
    cmp.add_argument("--workers", type=_positive_int, default=1, metavar="N", help="cells at once, each in its own process with its share of the cores/GPUs (default 1: in this process)")
    cmp.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every cell, e.g. data.root=/data")
    feats = sub.add_parser("features", help="precompute the backbone extractor's features of every split into <data.root>/features/ (data.features=true)")
    _add_config_args(feats)
    cfg = sub.add_parser("config", help="inspect configs")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    show = cfg_sub.add_parser("show", help="print the resolved config")
    _add_config_args(show)
    keys = cfg_sub.add_parser("keys", help="list every config key with its type, default and meaning")
    keys.add_argument("prefix", nargs="?", default="", help="only keys under this key or section, e.g. data or router.h")
    return ap


def release_process_group() -> None:
    """Destroy the DDP process group before the interpreter exits.

    Left to interpreter shutdown, gloo's worker threads can abort a rank ("terminate called
    without an active exception", SIGABRT), which fails a run that has finished its work.
    Called on success only: after an error another rank may still be in a collective.
    """
    if "torch" not in sys.modules:  # `config show` never imports torch: nothing to release
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def dashed_override(rest: list[str], argv: list[str]) -> str | None:
    """The hint for a LightningCLI-style `--data.root=/x` (or `--data.root /x`) among the
    unparsed arguments: overrides here are `key=value`, without dashes. None if there is none."""
    for item in rest:
        key, eq, value = item[2:].partition("=")
        if item.startswith("--") and (eq or "." in key):
            if not eq:
                after = argv[argv.index(item) + 1:]
                value = after[0] if after and not after[0].startswith("-") else "<value>"
            return f"unrecognized argument '{item}': config overrides are key=value without dashes; write {key}={value}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = ap.parse_known_args(argv)
    hint = dashed_override(rest, argv)
    if hint is not None:
        print(f"continual: error: {hint}", file=sys.stderr)
        return 2
    # argparse leaves key=value items after an option (`sweep FILE --count 3 data.root=/d`) unparsed
    if rest and (not hasattr(args, "overrides") or any(r.startswith("-") or "=" not in r for r in rest)):
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        args.overrides += rest
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
    except BrokenPipeError:
        return _stdout_closed()
    if code == 0:
        release_process_group()
    return code


def _stdout_closed() -> int:
    """`continual config keys | head`: the reader left. End quietly with 141 (128 + SIGPIPE), the
    status a shell reports for `seq 100000 | head` and other Unix tools the pipe closed on; stdout
    goes to /dev/null so the interpreter's final flush raises nothing either."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


def _on_ctrl_c(signum, frame) -> None:
    """Ctrl-C as a `KeyboardInterrupted` error: Lightning turns a KeyboardInterrupt raised inside
    training into a silent exit 1, but lets other exceptions through to the one-line report."""
    import os

    from continual.errors import KeyboardInterrupted
    from continual.rundir.folder import RUN_DIR_ENV

    run_dir = os.environ.get(RUN_DIR_ENV)
    how = f"continue with the same command plus resume={run_dir}" if run_dir else "run the same command again"
    raise KeyboardInterrupted(f"interrupted by Ctrl-C; {how}")


def _on_ctrl_c_fit(signum, frame) -> None:
    """Ctrl-C during `continual fit`: after the run wrote its finished metrics.json, nothing is
    lost but the end of the output, so say so and exit 0."""
    import os

    from continual.errors import KeyboardInterrupted
    from continual.rundir.folder import RUN_DIR_ENV
    from continual.rundir.results import finished_metrics

    run_dir = os.environ.get(RUN_DIR_ENV)
    if run_dir and finished_metrics(run_dir) is not None:
        done = KeyboardInterrupted(
            f"Ctrl-C after the run finished: its metrics are complete in {run_dir}/metrics.json; cut short: what "
            "follows them (plots, the printed summary, the loggers' last upload: wandb sync uploads an offline W&B run)"
        )
        done.exit_code = 0
        raise done
    _on_ctrl_c(signum, frame)


def _dispatch(args: argparse.Namespace) -> int:
    import signal

    from continual.errors import ContinualError, KeyboardInterrupted

    previous = signal.signal(signal.SIGINT, _on_ctrl_c_fit if args.command == "fit" else _on_ctrl_c)
    try:
        if args.command == "sweep":
            from continual.sweep.runner import run_sweep

            ran = run_sweep(args.file, args.count, args.dir, args.seed, args.overrides, args.timeout, args.max_failures, args.workers)
            return 1 if any(r["metric"] is None for r in ran) else 0  # a trial of this call failed
        if args.command == "compare":
            from continual.compare.command import compare

            return compare(args.config, args.out, args.overrides, shard=args.shard, seeds=args.seeds, only=args.only, workers=args.workers)
        if args.command == "config" and args.config_command == "keys":
            from continual.config.keys import format_keys, key_rows

            print(format_keys(key_rows(args.prefix)))
            return 0
        from continual.config import load_config

        cfg = load_config(args.config, args.overrides)
        if args.command == "config":
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg, resolve=True), end="")
            return 0
        if args.command == "features":
            from continual.features import precompute

            print(f"features cached under {precompute(cfg)}")
            return 0
        from continual.experiment import run

        run(cfg)
        return 0
    except (ContinualError, KeyboardInterrupted) as err:
        print(f"continual: {'error: ' if err.exit_code else ''}{err}", file=sys.stderr)
        return err.exit_code
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
