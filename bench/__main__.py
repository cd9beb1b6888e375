"""``python -m bench run [--quick] [--only NAME] [--threads 1,2,4] [--repeat N] [--out DIR]``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import BENCHMARKS


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--threads {text!r}: expected comma-separated positive integers, e.g. 1,2,4") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"--threads {text!r}: expected comma-separated positive integers, e.g. 1,2,4")
    return sorted(set(values))


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in BENCHMARKS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"--only {text!r}: unknown benchmark {', '.join(bad) or '(none)'}; "
            f"choose from {', '.join(BENCHMARKS)}")
    return names


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"--repeat {text!r}: expected a positive integer")
    return v


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Sabot's benchmarks against its peers.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the benchmarks and write raw results, summary, plots")
    run.add_argument("--quick", action="store_true",
                     help="small inputs and one repeat (a smoke test; about 2 minutes on 2 cores)")
    run.add_argument("--only", type=_names, default=None,
                     help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    run.add_argument("--threads", type=_int_list, default=None,
                     help="thread counts for the columnar and scheduler benchmarks"
                          " (default: 1 and the usable cores)")
    run.add_argument("--repeat", type=_positive, default=None,
                     help="repeats per engine (default: each benchmark's own; 1 with --quick)")
    run.add_argument("--out", type=Path, default=None,
                     help="output directory (default: bench/results/<UTC time>)")
    run.add_argument("--publish", action="store_true",
                     help="also copy the summary and plots into docs/ (docs/performance.md)")
    pub = sub.add_parser("publish", help="copy a finished run's summary and plots into docs/")
    pub.add_argument("run_dir", type=Path)
    sub.add_parser("list", help="list the benchmarks")
    args = parser.parse_args(argv)

    if args.cmd == "list":
        for name in BENCHMARKS:
            print(name)
        return 0
    from . import publish

    if args.cmd == "publish":
        publish.publish(args.run_dir)
        return 0

    from .harness import SuiteOptions, run_suite

    opts = SuiteOptions(quick=args.quick, only=args.only, threads=args.threads,
                        repeat=args.repeat, out=args.out,
                        command="python -m bench " + shlex.join(argv))
    out_dir, rows = run_suite(opts)
    if args.publish:
        publish.publish(out_dir)
    print((out_dir / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
