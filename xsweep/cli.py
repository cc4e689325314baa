"""The `xsweep` command line: a dict from subcommand to function.

Every user-fixable problem is an `XsweepError`: printed as what / where / how to fix, exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from xsweep.errors import XsweepError, environment_error
from xsweep.paths import REPO_ROOT
from xsweep.storage import display, is_uri, join

EXPERIMENTS_DIR = REPO_ROOT / "experiments"


def cmd_run(args: argparse.Namespace) -> int:
    from xsweep.config import load_config

    cfg = load_config(args.config, args.overrides)  # before the heavy imports: bad configs fail fast
    from xsweep.sweep.runner import describe_plan, run_sweep

    if args.dry_run:
        from xsweep.sweep.dry_run import describe_measured, read_early_stopping, read_gpu_check

        # Read first: a bad --like or --gpu-check fails before anything is projected.
        like = read_early_stopping(Path(args.like)) if args.like else None
        gpu_check = read_gpu_check(Path(args.gpu_check)) if args.gpu_check else None
        print(describe_plan(cfg, throughput=args.throughput))
        measured = describe_measured(cfg, like, gpu_check, args.throughput, gpu_check_source=args.gpu_check or "")
        if measured:
            print("\n".join(measured))
        return 0
    if args.like or args.gpu_check:
        raise XsweepError("--like and --gpu-check only shape the cost projection of a dry run",
                          where="xsweep run", fix="add --dry-run, or leave them out to run the sweep")
    run_dir, failed = run_sweep(cfg, resume=args.resume, address=args.address)
    if not cfg.sweep.downstream:  # stages only: their own tables, no trials to report
        for table in _stage_tables(run_dir):
            print(table)
        return 0
    status = _report(str(run_dir), expected_seeds=cfg.sweep.seeds)
    if failed:
        print(f"xsweep: error: {len(failed)} trial(s) failed: {', '.join(failed)}\n"
              f"  fix: read their record.json under {_under(run_dir, 'trials')}, then `xsweep run ... --resume`",
              file=sys.stderr)
        return 1
    return status


def _stage_tables(run_dir: Path | str) -> list[str]:
    """The tables a stages-only run wrote (results/*.md), from its folder or its bucket."""
    if not is_uri(run_dir):
        return [table.read_text(encoding="utf-8") for table in sorted((Path(run_dir) / "results").glob("*.md"))]
    from xsweep.storage import listing, read_bytes

    results = join(run_dir, "results")
    return [read_bytes(join(results, rel)).decode("utf-8") for rel in listing(results)
            if rel.endswith(".md") and "/" not in rel]  # results/*.md, as for a folder


def _under(run_dir: Path | str, name: str) -> str:
    """A run directory's `name`, for a folder or a bucket run's URI."""
    return join(run_dir, name) if is_uri(run_dir) else str(Path(run_dir) / name)


def cmd_submit(args: argparse.Namespace) -> int:
    from xsweep.sweep.submit import submit_sweep

    return submit_sweep(args.config, args.overrides, args.address, wait=not args.no_wait, resume=args.resume)


def cmd_status(args: argparse.Namespace) -> int:
    from xsweep.sweep.submit import job_status

    return job_status(args.job_id, args.address, follow=args.follow)


def cmd_stop(args: argparse.Namespace) -> int:
    from xsweep.sweep.submit import stop_job

    return stop_job(args.job_id, args.address)


def cmd_validate(args: argparse.Namespace) -> int:
    from xsweep.config import grid_points, load_config
    from xsweep.sweep.preflight import trial_configs

    for path in args.configs:
        cfg = load_config(path, args.overrides)
        trial_configs(cfg)  # every grid point, axes combined, must make a valid trial
        trials = len(grid_points(cfg)) * len(cfg.sweep.seeds)
        print(f"{path}: ok ({cfg.name}: {cfg.method}, {cfg.head.kind} head, {trials} trials)")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from xsweep.config import load_config

    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        try:
            cfg = load_config(path)
        except XsweepError as exc:  # e.g. data not assembled yet: the listing goes on, saying so
            print(f"{path.relative_to(REPO_ROOT)}\t(cannot load yet: {exc.what}; {exc.fix})")
            continue
        print(f"{path.relative_to(REPO_ROOT)}\t{cfg.description or cfg.name}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    return _report(args.run_dir)


def cmd_tensorboard(args: argparse.Namespace) -> int:
    from xsweep.report.tensorboard import start_tensorboard

    if is_uri(args.run_dir):  # TensorBoard reads the bucket itself
        from xsweep.storage import listing, tensorboard_source

        logdir, env = tensorboard_source(join(args.run_dir, "tensorboard"))
        if not listing(join(args.run_dir, "tensorboard")):
            raise XsweepError(f"no TensorBoard logs in {logdir!r}", where=args.run_dir,
                              fix="pass the URI of a run written by `xsweep run` (<storage.root>/<name>)")
        process, url = start_tensorboard(logdir, port=args.port, host=args.host, env=env)
    else:
        logdir = Path(args.run_dir) / "tensorboard"
        if not logdir.is_dir():
            raise XsweepError(f"no TensorBoard logs in {str(logdir)!r}", where=args.run_dir,
                              fix="pass a run directory written by `xsweep run`")
        process, url = start_tensorboard(logdir, port=args.port, host=args.host)
    print(f"TensorBoard for {logdir} at {url} (Ctrl-C stops it)")
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from xsweep.data.download import XSGD_INSTRUCTIONS, download
    from xsweep.paths import data_root

    root = Path(args.root).expanduser() if args.root else data_root()
    if args.name == "xsgd":
        print(XSGD_INSTRUCTIONS.replace("<data-root>", str(root)))
        return 0
    folder = download(args.name, root, url=args.url, sha256=args.sha256, allow_unpinned=args.allow_unpinned)
    print(f"{args.name}: ready in {folder}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from xsweep.data.synth import write_demo_data

    out = Path(args.out).absolute()
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise XsweepError(f"{str(existing)!r} is a file, not a folder", where="--out",
                          fix="choose a new folder for the demo data")
    if out.exists() and any(out.iterdir()):
        raise XsweepError(f"{str(out)!r} exists and is not empty", where="--out",
                          fix="choose a new folder; the generator never overwrites data")
    write_demo_data(out, seed=args.seed)
    print(f"demo data written to {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from xsweep.predict import format_prediction, predict, pulled_trial

    utterances = args.utterances or [line.strip() for line in sys.stdin if line.strip()]
    with pulled_trial(args.trial_dir) as trial_dir:
        predictions = predict(trial_dir, utterances)
    for prediction in predictions:
        print(format_prediction(prediction))
    return 0


def _report(run_dir: str, expected_seeds: list[int] | None = None) -> int:
    """Report a run directory, or a bucket run by its URI; print the table and where things are."""
    from xsweep.report.run import reported

    with reported(run_dir, expected_seeds=expected_seeds) as (paths, shown):
        print(paths.table_markdown.read_text(encoding="utf-8"))
        print(f"results table: {shown(paths.table_markdown)}")
        for extra in [paths.table_csv, paths.table_latex, *paths.paper_tables.values()]:
            if extra is not None:
                print(f"               {shown(extra)}")
        for name, plot in paths.plots.items():
            print(f"plot ({name}): {shown(plot)}")
    if is_uri(run_dir):
        print(f"trial records: {display(join(run_dir, 'trials'))}/*/record.json")
        print(f"TensorBoard:   xsweep tensorboard {run_dir}")
        return 0
    folder = Path(run_dir)
    print(f"trial records: {folder / 'trials'}/*/record.json")
    print(f"TensorBoard:   tensorboard --logdir {folder / 'tensorboard'} --host 127.0.0.1")
    print(f"           or: xsweep tensorboard {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xsweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment's sweep on Ray and write its report")
    run.add_argument("config", help="YAML experiment, e.g. experiments/quickstart.yaml")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-3 sweep.seeds=[0,1]")
    run.add_argument("--resume", action="store_true", help="finish an interrupted run in the same directory")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    run.add_argument("--dry-run", action="store_true", help="print the trials the sweep implies and stop")
    run.add_argument("--throughput", metavar="RATE",
                     help="with --dry-run: the device's sustained FLOP/s (1e14, 100T) or forward tokens/s "
                          "(5000tok/s) for the device-hours estimate (default: the rate bench/bench_step.py "
                          "measured for this backbone, precision and device, when there is one)")
    run.add_argument("--like", metavar="RUN_DIR",
                     help="with --dry-run: an earlier run directory; its finished trials' early stopping gives an "
                          "expected figure beside the upper bound")
    run.add_argument("--gpu-check", metavar="FILE",
                     help="with --dry-run: the gpu_check.json of `python -m bench.gpu_check` run on the GPU; gives "
                          "how many trials fit on one GPU at resources.gpus_per_trial")
    run.set_defaults(func=cmd_run)

    job_server = "the cluster's job server, e.g. http://127.0.0.1:8265 (default: RAY_API_SERVER_ADDRESS)"
    submit = sub.add_parser("submit", help="run an experiment's sweep on a Ray cluster, as a Ray job")
    submit.add_argument("config", help="YAML experiment inside this checkout, e.g. experiments/quickstart.yaml")
    submit.add_argument("overrides", nargs="*", help="dotted overrides, e.g. storage.root=/mnt/shared/runs")
    submit.add_argument("--address", help=job_server)
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return; do not stream logs")
    submit.add_argument("--resume", action="store_true", help="finish an interrupted run in the same directory")
    submit.set_defaults(func=cmd_submit)

    status = sub.add_parser("status", help="state of a submitted sweep job")
    status.add_argument("job_id")
    status.add_argument("--address", help=job_server)
    status.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    status.set_defaults(func=cmd_status)

    stop = sub.add_parser("stop", help="stop a submitted sweep job")
    stop.add_argument("job_id")
    stop.add_argument("--address", help=job_server)
    stop.set_defaults(func=cmd_stop)

    validate = sub.add_parser("validate", help="check configs without running them")
    validate.add_argument("configs", nargs="+")
    validate.add_argument("--set", dest="overrides", action="append", default=[], help="dotted override")
    validate.set_defaults(func=cmd_validate)

    sub.add_parser("ls", help="list the shipped experiments").set_defaults(func=cmd_ls)

    report = sub.add_parser("report", help="(re)write the tables of a run directory")
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)

    predict = sub.add_parser("predict", help="classify utterances with a trial's saved prompt and head")
    predict.add_argument("trial_dir", help="a completed trial, e.g. runs/quickstart/trials/<trial id>, or its URI in a bucket run")
    predict.add_argument("utterances", nargs="*", help="utterances (default: one per line on stdin)")
    predict.set_defaults(func=cmd_predict)

    tb = sub.add_parser("tensorboard", help="serve a run's TensorBoard logs on 127.0.0.1")
    tb.add_argument("run_dir")
    tb.add_argument("--port", type=int, default=6006)
    tb.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    tb.set_defaults(func=cmd_tensorboard)

    data = sub.add_parser("data", help="data sets: generate the demo data").add_subparsers(dest="data_command",
                                                                                           required=True)
    synth = data.add_parser("synth", help="write the demo data set (MASSIVE, XSGD and Tatoeba layouts)")
    synth.add_argument("--out", default="demo-data")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=cmd_data_synth)
    fetch = data.add_parser("download", help="fetch an official data set (massive, sgd, tatoeba) into the data root; "
                                             "`xsgd` prints how to get XSGD")
    fetch.add_argument("name", help="massive, sgd, tatoeba or xsgd")
    fetch.add_argument("--root", default=None, help="data root (default: $XSWEEP_DATA or ~/.cache/xsweep/data)")
    fetch.add_argument("--url", default=None, help="a mirror of the official archive")
    fetch.add_argument("--sha256", default=None, help="the archive's expected sha256")
    fetch.add_argument("--allow-unpinned", action="store_true",
                       help="accept an archive with no pinned hash (its hash is recorded)")
    fetch.set_defaults(func=cmd_data_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Download/loading progress bars say nothing useful for local models and flood sweep output.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return args.func(args)
    except XsweepError as exc:
        print(f"xsweep: error: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        error = environment_error(exc)
        if error is None:
            raise
        print(f"xsweep: error: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xsweep: interrupted; finished trials are kept: `xsweep run <config> --resume` continues",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
