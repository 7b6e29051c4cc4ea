"""Compare fine-tuning runs with their baseline (local/bench_finetune.sh): a WER table and a plot.

Reads the baseline's stage-4 results (``results-epoch-N-avg-K.json``) and, for every run
directory, its ``progress.json`` and ``results-best.json``; writes ``<out>.md`` and ``<out>.png``
(rlhf/compare.py).
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import HelpFormatter, run_step
from rlhf.compare import compare
from rlhf.log import setup_logging


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("baseline_results", type=Path,
                   help="the baseline's stage-4 results, e.g. exp/ctc_tdnn/results-epoch-12-avg-3.json")
    p.add_argument("run_dirs", type=Path, nargs="+",
                   help="output directories of stage-7 runs (progress.json, results-best.json)")
    p.add_argument("--out", type=Path, required=True,
                   help="write the table to OUT.md and the plot of dev WER against time to OUT.png")
    p.add_argument("--splits", default="dev test", help="the splits tabulated, space-separated")
    args = p.parse_args(argv)
    setup_logging(None, "compare-finetune")
    run_step(lambda: print(compare(args.baseline_results, args.run_dirs, args.out, args.splits.split())))


if __name__ == "__main__":
    main()
