"""``python -m benchmarks data [fetch]``: report where each dataset would come from, or fill the cache."""

from __future__ import annotations

import argparse
import sys



def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add the ``data`` subcommand to an argparse ``subparsers`` object; returns its parser."""
    parser = subparsers.add_parser(
        "data",
        help="list the datasets and their sources, or fetch them into the cache",
        description="Without an action, list each dataset split, whether it is available and from which source "
        "(nothing is read or downloaded). 'fetch' loads every split that can be had, verifies it and caches it.",
    )
    parser.add_argument("action", nargs="?", choices=("list", "fetch"), default="list", help="default: list")
    parser.add_argument("--data-dir", help="a data directory to search first (default: $SGMCMC_DATA_DIR)")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="never touch the network (default: $SGMCMC_OFFLINE)")
    parser.add_argument("--cache-dir", help="where decoded arrays and downloads go (default: $SGMCMC_CACHE_DIR "
                        "or ~/.cache/sgmcmc-bench)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``data list`` (exit 0) or ``data fetch`` (exit 0 when every split is cached, else 1)."""
    from .core import DataError  # imported here, not at the top: `--help` parses without torch
    from .loaders import available, fetch_all

    where = dict(data_dir=args.data_dir, offline=args.offline, cache_dir=args.cache_dir)
    try:
        from .sources import settings

        settings(**where)
    except ValueError as exc:  # e.g. SGMCMC_OFFLINE=on
        print(f"python -m benchmarks data: error: {exc}", file=sys.stderr)
        return 2
    if args.action == "list":
        for item in available(**where):
            line = f"{item.dataset:<14} {item.split:<11} {item.status:<9}"
            if item.status == "missing":
                print(f"{line} {item.detail}")
            else:
                via = f" via {item.detail} (if the network allows)" if item.status == "download" else ""
                print(f"{line} {item.source}: {item.location}{via}")
        print("(list reads no file: `python -m benchmarks data fetch` decodes every split, checks its sha256 "
              "and caches it)")
        return 0
    results = fetch_all(**where)
    for (dataset, split), result in results.items():
        if isinstance(result, DataError):
            print(f"{dataset:<14} {split:<11} FAILED    {type(result).__name__}: {result}")
        else:
            served = f"{result.source}: {result.location}" + (f" (from {result.origin})" if result.origin else "")
            skipped = f", {result.num_skipped} undecodable files skipped" if result.num_skipped else ""
            print(f"{dataset:<14} {split:<11} ok        {result.num_images} images{skipped}, sha256 {result.sha256[:16]}..., {served}")
    return 1 if any(isinstance(result, DataError) for result in results.values()) else 0
