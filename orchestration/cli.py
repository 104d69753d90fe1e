"""The `tessera` command line."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path


def _cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from orchestration.sample_data.generator import GeneratorConfig, default_workers, generate

    cfg = GeneratorConfig(persons=args.persons, seed=args.seed, as_of=args.as_of,
                          history_days=args.history_days,
                          workers=args.workers or default_workers())
    started = time.perf_counter()
    chunks = -(-cfg.persons // cfg.chunk_size)
    with tqdm(total=chunks, desc="generating", unit="chunk", disable=not sys.stderr.isatty()) as bar:
        summary = generate(args.out, cfg, truth_dir=args.truth, progress=lambda *_: bar.update(1))
    counts = summary["counts"]
    print(f"Wrote {cfg.persons:,} persons to {args.out} in {time.perf_counter() - started:.1f}s: "
          f"{counts.get('event_messages', 0):,} event messages, {counts.get('orders_in_export', 0):,} orders, "
          f"{summary['planted_faults']} planted faults. Ground truth: "
          f"{Path(args.truth) if args.truth else Path(args.out).parent / 'truth'}")
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera", description="Tessera user-segmentation platform.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = sub.add_parser("generate", help="write realistic, messy sample data and its ground truth",
                         description="Write sample data to the landing contract (DESIGN.md) plus a ground-truth folder.")
    gen.add_argument("--persons", type=_positive, default=2000, help="number of simulated persons (default 2000)")
    gen.add_argument("--out", type=Path, default=Path("data/landing"), help="landing folder to write (default data/landing)")
    gen.add_argument("--truth", type=Path, default=None, help="ground-truth folder (default: truth/ beside --out)")
    gen.add_argument("--seed", type=int, default=42, help="random seed; the same seed gives the same files")
    gen.add_argument("--as-of", type=_date, default=dt.date(2026, 10, 31), help="last day of data (default 2026-10-31)")
    gen.add_argument("--history-days", type=_positive, default=180, help="days of history before --as-of")
    gen.add_argument("--workers", type=_positive, default=None, help="processes (default: up to 2)")
    gen.set_defaults(func=_cmd_generate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
