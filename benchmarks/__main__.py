"""`python -m benchmarks [--smoke] [--out DIR] [--only FIGURES]`: run the figures, print the
table, save all; with `--only`, run just those figures and print their data."""

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
                             "data as JSON and saves nothing")
    args = parser.parse_args()
    if args.only:
        unknown = set(args.only) - set(suite.ONLY)
        if unknown:
            parser.error(f"no such figure: {', '.join(sorted(unknown))}")
        print(json.dumps(suite.run_only(args.only, "smoke" if args.smoke else "full"),
                         indent=1, default=str))
        return
    results = suite.run_all("smoke" if args.smoke else "full")
    results["machine"] = report.machine()
    path = report.write(results, args.out)
    charts = report.charts(results, args.out) if not args.smoke else []
    print(report.markdown(results))
    print(f"\nwrote {path}" + "".join(f"\nwrote {chart}" for chart in charts))


if __name__ == "__main__":
    main()
