"""Choose the LM scale of HLG decoding on a held-out split (steps/tune_lm_scale.sh).

Decodes ``--split`` (dev: never the test set) with HLG 1-best at every scale of
``--lm-scales`` and writes ``<exp_dir>/lm-scale-<split>-epoch-N-avg-K.md`` (with
``--checkpoint``: ``lm-scale-<split>-<checkpoint stem>.md``): the WER per scale, the lowest
marked. The network runs once; every scale is its own lattice search,
because the scale also decides what the beams prune. Pass the chosen value to the recipe
as ``--lm-scale``.
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import (HelpFormatter, add_dataclass_options, add_inference_options, add_model_dirs, add_stage_options,
                      dataclass_from_args, run_step)
from rlhf.decode import LatticeConfig, sweep_lm_scales
from rlhf.log import setup_logging
from rlhf.stage import atomic_output

# The search options the sweep takes from the command line (the LM scale is what it varies).
SEARCH_OPTIONS = ("search_beam", "output_beam", "max_active_states")


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_dirs(p)
    p.add_argument("--split", default="dev", help="the held-out split to choose on (not the test set)")
    p.add_argument("--lm-scales", default="0.3 0.4 0.5 0.6 0.7 0.8 0.9 1.0 1.2",
                   help="the LM scales to try, space-separated")
    add_inference_options(p, epoch_required=False)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="sweep this checkpoint file (e.g. a fine-tuned best.pt) instead of --epoch/--avg")
    p.add_argument("--blank-penalty", type=float, default=0.0,
                   help="subtract this from the blank's log-probability before the search (0: none); a sweep "
                        "over it tells whether a fine-tuned model's fewer deletions are only a calibration")
    add_dataclass_options(p, LatticeConfig(), names=SEARCH_OPTIONS)
    add_stage_options(p, "<exp_dir>/log")
    args = p.parse_args(argv)
    setup_logging(args.log_dir or args.exp_dir / "log", "tune_lm_scale")
    if args.checkpoint is None and args.epoch is None:
        p.error("give --epoch (and --avg) or --checkpoint")
    model_name = args.checkpoint.stem if args.checkpoint else f"epoch-{args.epoch}-avg-{args.avg}"
    model_words = f"checkpoint {args.checkpoint}" if args.checkpoint else f"epoch {args.epoch}, avg {args.avg}"
    if args.blank_penalty:
        model_name += f"-blank-penalty-{args.blank_penalty:g}"
        model_words += f", blank penalty {args.blank_penalty:g}"

    def step() -> None:
        try:
            scales = [float(s) for s in args.lm_scales.split()]
        except ValueError:
            raise ValueError(f"--lm-scales takes numbers separated by spaces, got {args.lm_scales!r}")
        if not scales or min(scales) <= 0:
            raise ValueError(f"--lm-scales needs positive numbers, got {args.lm_scales!r}")
        config = dataclass_from_args(LatticeConfig, args, names=SEARCH_OPTIONS)
        stats = sweep_lm_scales(args.lang_dir, args.fbank_dir, args.exp_dir, args.corpus, args.split, args.epoch,
                                args.avg, scales, config, args.max_duration, args.device, args.checkpoint,
                                args.blank_penalty)
        best = min(stats, key=lambda s: (stats[s].wer, abs(s - LatticeConfig().lm_scale)))
        lines = [f"HLG 1-best WER on {args.split} per LM scale ({model_words}; "
                 f"search beam {config.search_beam}, output beam {config.output_beam}).", "",
                 "| LM scale | WER | errors |", "|---|---|---|"]
        lines += [f"| {s:g}{' (lowest)' if s == best else ''} | {st.wer:.2f} | `{st.summary_line()}` |"
                  for s, st in stats.items()]
        table = "\n".join(lines) + "\n"
        with atomic_output(args.exp_dir / f"lm-scale-{args.split}-{model_name}.md") as tmp:
            tmp.write_text(table)
        print(table)

    run_step(step)


if __name__ == "__main__":
    main()
