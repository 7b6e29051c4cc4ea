"""Sequence fine-tuning of the baseline on its own lattices (steps/finetune.sh, stage 7, and its controls).

Objectives (``--objective``), all evaluated on the stage-5 training lattices:
- ``rl``: J(theta) = expected stage-6 advantage under the re-scored lattice posterior
  (rlhf.rl.objective; ``--reward frame`` or ``edit``), optionally plus ``--ctc-weight`` x CTC;
- ``mwer``: k2's ``mwer_loss`` on the re-scored lattices (a control);
- ``mmi``: lattice MMI, the reference's CTC graph (numerator) against the re-scored lattice
  (denominator) (a control: the criterion k2 and icefall users know);
- ``ctc``: the baseline's own CTC loss (a control: training on for the same time).
Optimizers (``--optimizer``): ``hf`` (rlhf.hf, ``rl`` only) or ``adam``.

The loss minimized is -J per frame (``frame``) or per reference word (``edit``). Hessian-free
takes its gradient over the training lattices (``--grad-fraction`` of them per iteration), its
curvature over a resampled ``--curvature-fraction`` of those, and rho, backtracking and the
line search over ``--heldout-utts`` utterances held out of the gradient. Dev WER (HLG 1-best,
as stage 4) is measured every ``--eval-every`` iterations (and every ``--eval-interval``
seconds); the best model is ``best.pt``. The run stops after ``--max-iters`` iterations or
``--time-budget`` seconds of optimization (evaluation not counted), and resumes from
``state.pt`` (written after every iteration) when run again with the same options.
Then ``--decode-splits`` (dev, test) are decoded with best.pt exactly as stage 4 decodes the
baseline, and one table compares the two. Outputs in ``--out-dir``: best.pt, state.pt,
progress.json, <method>/ (recogs, errs), results-best.{md,json}, comparison.{md,png}, log/.
"""

import argparse
from pathlib import Path
from typing import Optional

from torch.distributed.elastic.multiprocessing.errors import record

from rlhf import distributed
from rlhf.cli import (HelpFormatter, add_dataclass_options, add_device_option, add_distributed_options, add_model_dirs,
                      add_stage_options, check_positive, dataclass_from_args, run_step)
from rlhf.decode import LatticeConfig
from rlhf.finetune import FinetuneConfig, finetune, report
from rlhf.hf import HessianFreeConfig, HessianFreeError
from rlhf.log import setup_logging
from rlhf.rl.objective import NonFiniteWeightError

# Martens' lambda = 1 and 50 CG steps made tiny steps on this objective (RESULTS.md, stage 7);
# these come from short pilot runs on the default corpus (held-out loss and dev WER; never test).
HF_DEFAULTS = HessianFreeConfig(init_damping=0.01, cg_max_iters=12)
# The lattice search options of stage 4's decoding (its n-best options clash with ours and are not needed).
SEARCH_OPTIONS = ("search_beam", "output_beam", "min_active_states", "max_active_states", "lm_scale")


@record
def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_dirs(p)
    p.add_argument("--epoch", type=int, required=True, help="the baseline, whose lattices stage 5 made: epoch-N.pt ...")
    p.add_argument("--avg", type=int, default=1,
                   help="... averaged (parameter by parameter) with the K-1 epochs before it")
    p.add_argument("--max-duration", type=float, default=200.0,
                   help="seconds of audio per batch of dev and test decoding")
    add_device_option(p)
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where the run writes (default: <exp_dir>/finetune/<objective>-<optimizer>[-<reward>])")
    p.add_argument("--dev-split", default="dev", help="the held-out split whose WER picks the best model")
    p.add_argument("--decode-splits", default="dev test",
                   help="then decode these splits with best.pt as stage 4 does and compare with the baseline, "
                        "space-separated ('' to skip)")
    add_dataclass_options(p, FinetuneConfig())
    add_dataclass_options(p.add_argument_group("Hessian-free (rlhf.hf)"), HF_DEFAULTS, prefix="hf_")
    add_dataclass_options(p.add_argument_group("dev and test decoding (as stage 4)"), LatticeConfig(),
                          names=SEARCH_OPTIONS)
    add_stage_options(p, "<out_dir>/log")
    add_distributed_options(p)
    args = p.parse_args(argv)
    config = dataclass_from_args(FinetuneConfig, args)
    out_dir = args.out_dir or args.exp_dir / "finetune" / config.name
    setup_logging(args.log_dir or out_dir / "log", "finetune")
    hf_config = dataclass_from_args(HessianFreeConfig, args, prefix="hf_")
    lattice_config = dataclass_from_args(LatticeConfig, args, names=SEARCH_OPTIONS)

    def optimize() -> None:
        check_positive(args, "max_duration")
        try:
            finetune(args.lang_dir, args.fbank_dir, args.exp_dir, args.corpus, args.epoch, args.avg, config,
                     hf_config, lattice_config, out_dir, args.max_duration, args.device, args.force, args.dev_split)
        except (HessianFreeError, NonFiniteWeightError) as e:
            raise ValueError(f"{e} (the last good model is in {out_dir}/state.pt and best.pt)") from e

    def decode_best() -> None:
        print(report(args.lang_dir, args.fbank_dir, args.exp_dir, out_dir, args.corpus, args.epoch, args.avg,
                     args.decode_splits.split(), lattice_config, args.max_duration, args.device, args.force))

    run_step(optimize, args.dist_timeout, args.device)
    # Stage 4's decoding is one process: rank 0 runs it after the job's ranks have parted, so
    # the others neither wait in a collective nor decode the same files.
    if args.decode_splits.split() and distributed.from_environment().is_main:
        run_step(decode_best)


if __name__ == "__main__":
    main()
