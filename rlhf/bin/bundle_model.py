"""Copy a model's lang files and feature configuration into its directory (steps/bundle_model.sh).

The model directory then transcribes on its own (``rlhf-transcribe --model-dir <exp-dir>``):
see rlhf/bundle.py for what is copied.
"""

import argparse
from typing import Optional

from rlhf.bundle import bundle_model
from rlhf.cli import HelpFormatter, add_model_dirs, add_stage_options, run_step
from rlhf.log import setup_logging
from rlhf.manifests import manifest_path


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_dirs(p)
    add_stage_options(p, "<exp_dir>/log")
    args = p.parse_args(argv)
    setup_logging(args.log_dir or args.exp_dir / "log", "bundle_model")
    cuts = manifest_path(args.fbank_dir, args.corpus, "cuts", "train")
    run_step(lambda: bundle_model(args.lang_dir, cuts, args.exp_dir, args.force))


if __name__ == "__main__":
    main()
