"""`python -m benchmarks [--smoke] [--out DIR]`: run the figures, print the table, save all."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import report, suite


def main() -> None:
    """Run, print and save."""
    parser = argparse.ArgumentParser(description="nova-duet benchmarks (offline).")
    parser.add_argument("--smoke", action="store_true", help="a tiny size, for CI")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results = suite.run_all("smoke" if args.smoke else "full")
    results["machine"] = report.machine()
    path = report.write(results, args.out)
    charts = report.charts(results, args.out) if not args.smoke else []
    print(report.markdown(results))
    print(f"\nwrote {path}" + "".join(f"\nwrote {chart}" for chart in charts))


if __name__ == "__main__":
    main()
