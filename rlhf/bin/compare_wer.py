"""Paired bootstrap of two systems' WER on the same utterances (steps/compare_wer.sh).

Reads two icefall ``recogs-*.txt`` files (system A, the reference point, e.g. the baseline;
system B, e.g. the fine-tuned model) and prints B's WER against A's with the 95% interval of
the difference and the probability that B is better (Bisani & Ney 2004; rlhf/significance.py).
A difference whose interval holds zero is not a result.
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import HelpFormatter, run_step
from rlhf.significance import paired_bootstrap, read_recogs, speakers_by_pattern


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("recogs_a", type=Path, help="system A's recogs file (the reference point, e.g. the baseline)")
    p.add_argument("recogs_b", type=Path, help="system B's recogs file (e.g. the fine-tuned model)")
    p.add_argument("--name-a", default="A", help="system A's name in the printed line")
    p.add_argument("--name-b", default="B", help="system B's name in the printed line")
    p.add_argument("--num-samples", type=int, default=10000,
                   help="bootstrap resamples (of the utterances, or of the speakers with --speaker-pattern)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    p.add_argument("--speaker-pattern", default="",
                   help="resample speakers, not utterances: a regular expression whose first group is the speaker "
                        "in a cut id (default corpus: '^([^-]+)-'; AN4: '^[^-]+-([^-]+)-'); the interval then "
                        "holds for new speakers")
    args = p.parse_args(argv)

    def step() -> None:
        for path in (args.recogs_a, args.recogs_b):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such recogs file")
        if args.num_samples < 100:
            raise ValueError(f"--num-samples must be at least 100, got {args.num_samples}")
        a, b = read_recogs(args.recogs_a), read_recogs(args.recogs_b)
        speakers = speakers_by_pattern(sorted(a), args.speaker_pattern) if args.speaker_pattern else None
        result = paired_bootstrap(a, b, args.num_samples, args.seed, speakers)
        print(result.summary(args.name_a, args.name_b))

    run_step(step)


if __name__ == "__main__":
    main()
