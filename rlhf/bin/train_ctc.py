"""Train the baseline CTC model with k2's CTC loss (steps/train_ctc.sh, stage 3).

Writes to ``<exp_dir>``: ``epoch-N.pt`` after every epoch (model, optimizer, scheduler,
history), ``tensorboard/`` event files, ``log/``, ``metrics.json`` and ``training-curve.png``;
first ``lang/`` and ``features.json`` (rlhf/bundle.py), so the directory decodes on its own.
After every epoch the model that decoding will use (the epoch averaged with the ``--avg``-1
before it) is judged on the dev split; with ``--patience K`` training stops when neither its
dev WER nor its dev loss has reached a new best for K epochs (the convergence rule). At the
end ``selected.json`` names the epoch with the lowest judged dev WER, which stages 4-7 use.
``--start-epoch N`` resumes from ``epoch-(N-1).pt`` and gives exactly the model an
uninterrupted run gives: batches, dropout masks and learning rates depend only on the seed
and the epoch.

Run as several processes (``steps/train_ctc.sh --world-size N``, torchrun) it is data-parallel
training with DistributedDataParallel: each rank takes every N-th batch, and a step is the
single-process step on the N batches together (the loss is normalized by the frames of all of
them), so one step sees N times ``--max-duration`` seconds of audio and an epoch has N times
fewer steps. Rank 0 writes every file (checkpoints, TensorBoard, metrics, the stage marker);
the dev loss and WER are computed over every rank's share of the dev set. A run may be resumed
with another world size (the history records the world size of each epoch).
"""

import argparse
from typing import Optional

from torch.distributed.elastic.multiprocessing.errors import record

from rlhf.cli import (HelpFormatter, add_dataclass_options, add_device_option, add_distributed_options, add_model_dirs,
                      add_stage_options, check_positive, dataclass_from_args, run_step)
from rlhf.lang.tokenizer import Tokenizer
from rlhf.log import setup_logging
from rlhf.model import add_model_options, model_config_from_args
from rlhf.train import TrainConfig, train


@record
def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_dirs(p)
    p.add_argument("--num-features", type=int, default=80,
                   help="feature bins per frame of the cuts (stage 2's --num-mel-bins)")
    p.add_argument("--dev-split", default="dev", help="the held-out split of the per-epoch loss and greedy WER")
    p.add_argument("--start-epoch", type=int, default=1, help="resume from epoch-(N-1).pt (1: start from scratch)")
    add_device_option(p)
    add_dataclass_options(p, TrainConfig())
    add_model_options(p)
    add_stage_options(p, "<exp_dir>/log")
    add_distributed_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir or args.exp_dir / "log", "train")

    def step() -> None:
        check_positive(args, "num_epochs", "max_duration")
        vocab_size = Tokenizer(args.lang_dir).vocab_size
        config = dataclass_from_args(TrainConfig, args)
        train(args.lang_dir, args.fbank_dir, args.exp_dir, args.corpus,
              model_config_from_args(args, args.num_features, vocab_size), config, args.start_epoch,
              args.device, args.force, args.dev_split)

    run_step(step, args.dist_timeout, args.device)


if __name__ == "__main__":
    main()
