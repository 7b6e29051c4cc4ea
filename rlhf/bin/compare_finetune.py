"""Compare fine-tuning runs with their baseline (local/bench_finetune.sh): a WER table and a plot.

Reads the baseline's stage-4 results (``results-epoch-N-avg-K.json``) and, for every run
directory, its ``progress.json`` and ``results-best.json``; writes ``<out>.md`` and ``<out>.png``
(rlhf/compare.py); with ``--recogs-dir``, gathers the test recogs and adds the per-seed summary
and the paired bootstrap.
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
    p.add_argument("--recogs-dir", type=Path,
                   help="gather every system's test recogs here (recogs-test-<system>[-greedy].txt) and add a paired "
                        "bootstrap on test against the baseline and --reference-method")
    p.add_argument("--reference-method", default="rl-hf-frame",
                   help="the method every other one is also compared with, seed by seed")
    args = p.parse_args(argv)
    setup_logging(None, "compare-finetune")
    run_step(lambda: print(compare(args.baseline_results, args.run_dirs, args.out, args.splits.split(),
                                   args.recogs_dir, args.reference_method)))


if __name__ == "__main__":
    main()
