"""`python -m benchmarks [--smoke] [--out DIR] [--only FIGURES [--save]]`: run the figures,
print the table, save all; with `--only`, run just those figures and print their data (with
`--save`, also write it to DIR, one file a figure)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import report, suite


def main() -> None:
    """Run, print and save."""
    parser = argparse.ArgumentParser(description="nova-duet benchmarks (offline).")
    parser.add_argument("--smoke", action="store_true", help="a tiny size, for CI")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--only", type=lambda text: text.split(","), metavar="FIGURES",
                        help=f"comma-separated, of: {', '.join(suite.ONLY)}; prints their "
                             "data as JSON and saves nothing (unless --save)")
    parser.add_argument("--save", action="store_true",
                        help="with --only: also write each figure to OUT/<size>-<figure>.json "
                             "(and its table and goals to .md, when it has its own)")
    args = parser.parse_args()
    if args.save and not args.only:
        parser.error("--save is for --only (a whole run always saves)")
    if args.only:
        unknown = set(args.only) - set(suite.ONLY)
        if unknown:
            parser.error(f"no such figure: {', '.join(sorted(unknown))}")
        only = suite.run_only(args.only, "smoke" if args.smoke else "full")
        print(json.dumps(only, indent=1, default=str))
        if args.save:
            paths = report.write_only({**only, "machine": report.machine()}, args.out)
            print("".join(f"\nwrote {path}" for path in paths))
        return
    results = suite.run_all("smoke" if args.smoke else "full")
    results["machine"] = report.machine()
    path = report.write(results, args.out)
    charts = report.charts(results, args.out) if not args.smoke else []
    print(report.markdown(results))
    print(f"\nwrote {path}" + "".join(f"\nwrote {chart}" for chart in charts))


if __name__ == "__main__":
    main()
