"""Train the baseline CTC model with k2's CTC loss (stage 3).

Writes to ``<exp_dir>``: ``epoch-N.pt`` after every epoch (model, optimizer, scheduler,
history), ``tensorboard/`` event files, ``log/``, ``metrics.json`` and ``training-curve.png``;
first ``lang/`` and ``features.json`` (rlhf/export.py), so the directory decodes on its own.
``--start-epoch N`` resumes from ``epoch-(N-1).pt`` and gives exactly the model an
uninterrupted run gives: batches, dropout masks and learning rates depend only on the seed
and the epoch.
"""

import argparse
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rlhf.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from rlhf.cli import (add_dataclass_options, add_model_dirs, add_stage_options, dataclass_from_args,
                      run_step)
from rlhf.ctc import CtcGraphCompiler, ctc_loss, greedy_search
from rlhf.data import batch_inputs, load_cuts, make_dataloader
from rlhf.export import export_lang
from rlhf.lang.tokenizer import Tokenizer
from rlhf.log import setup_logging
from rlhf.manifests import manifest_path
from rlhf.model import CtcModel, ModelConfig, num_parameters, pick_device
from rlhf.scoring import Utterance, compute_wer
from rlhf.stage import StageMarker, atomic_output


@dataclass
class TrainConfig:
    num_epochs: int = 12
    max_duration: float = 120.0   # seconds of audio per batch
    lr: float = 2e-3              # peak Adam learning rate
    warmup_steps: int = 300       # linear warm-up, then inverse square-root decay
    clip_grad_norm: float = 5.0
    seed: int = 42
    log_interval: int = 20        # batches between loss lines in the log and TensorBoard
    num_workers: int = 0
    spec_augment: bool = True     # time and frequency masking of the training features


@dataclass
class EpochStats:
    """What one epoch did; a list of these is the training history."""
    epoch: int
    train_loss: float             # per output frame
    dev_loss: float
    dev_wer: float                # greedy CTC, percent
    seconds: float
    num_batches: int
    num_skipped: int              # batches with a non-finite loss or gradient
    lr: float


def learning_rate_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then decay as 1/sqrt(step)."""
    step = max(step, 1)
    return min(step / warmup_steps, math.sqrt(warmup_steps / step))


class Trainer:
    def __init__(self, model: CtcModel, tokenizer: Tokenizer, config: TrainConfig, device: torch.device):
        self.model = model.to(device)
        self.config = config
        self.device = device
        self.tokenizer = tokenizer
        self.compiler = CtcGraphCompiler(tokenizer, device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, config.warmup_steps))
        self.step = 0

    def train_step(self, batch: dict) -> Optional[float]:
        """One update; returns the loss per frame, or None when the batch was skipped.

        A batch whose loss or gradient is not finite (e.g. a transcript longer than its audio
        allows) is skipped, not propagated into the weights.
        """
        self.model.train()
        features, num_frames, texts, _ = batch_inputs(batch, self.device)
        log_probs, lengths = self.model(features, num_frames)
        loss = ctc_loss(log_probs, lengths, texts, self.compiler)
        self.optimizer.zero_grad()
        if not torch.isfinite(loss).all():
            return None
        frames = lengths.sum().item()
        (loss.sum() / frames).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad()
            return None
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.sum().item() / frames

    @torch.no_grad()
    def evaluate(self, loader) -> tuple[float, float]:
        """Loss per frame and greedy-CTC WER (percent) on a held-out set."""
        self.model.eval()
        total_loss, total_frames, utts = 0.0, 0, []
        for batch in loader:
            features, num_frames, texts, cut_ids = batch_inputs(batch, self.device)
            log_probs, lengths = self.model(features, num_frames)
            loss = ctc_loss(log_probs, lengths, texts, self.compiler)
            finite = torch.isfinite(loss)
            total_loss += loss[finite].sum().item()
            total_frames += lengths[finite.to(lengths.device)].sum().item()
            for cut_id, text, hyp in zip(cut_ids, texts, greedy_search(log_probs, lengths)):
                utts.append(Utterance(cut_id, text.split(), self.tokenizer.decode(hyp).split()))
        return total_loss / max(total_frames, 1), compute_wer(utts).wer

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]


# Options that do not change what an epoch computes: a run may be resumed with other values
# (e.g. more epochs than first planned).
RESUMABLE_WITH_CHANGES = {"num_epochs", "log_interval", "num_workers"}


def check_resumable(path: Path, saved: dict, config: TrainConfig) -> None:
    """Refuse to resume from a checkpoint whose training options would change the result."""
    diffs = [f"--{k.replace('_', '-')}: checkpoint has {v!r}, options say {getattr(config, k)!r}"
             for k, v in saved.items() if k not in RESUMABLE_WITH_CHANGES and getattr(config, k) != v]
    if diffs:
        raise ValueError(f"{path} was trained with other options ({'; '.join(diffs)}); resume with the same ones")


def train(lang_dir: Path, fbank_dir: Path, exp_dir: Path, corpus: str, model_config: ModelConfig,
          config: TrainConfig, start_epoch: int = 1, device_name: str = "auto", force: bool = False,
          dev_split: str = "dev") -> None:
    train_cuts_path = manifest_path(fbank_dir, corpus, "cuts", "train")
    dev_cuts_path = manifest_path(fbank_dir, corpus, "cuts", dev_split)
    tokenizer = Tokenizer(lang_dir)
    if model_config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"model vocab_size {model_config.vocab_size} != {tokenizer.vocab_size} tokens in {lang_dir}")
    train_cuts, dev_cuts = load_cuts(train_cuts_path), load_cuts(dev_cuts_path)
    # The lang files and feature options go with the model, so exp_dir can decode on its own.
    export_lang(lang_dir, train_cuts_path, exp_dir, force)
    options = {"model": model_config.to_dict(), "train": vars(config), "corpus": corpus, "dev_split": dev_split}
    marker = StageMarker(exp_dir, "train", options, [train_cuts_path, dev_cuts_path, lang_dir / "tokens.txt"])
    if start_epoch == 1 and marker.skip_if_complete(force):
        return
    marker.invalidate()
    if start_epoch < 1 or start_epoch > config.num_epochs:
        raise ValueError(f"--start-epoch must be between 1 and --num-epochs ({config.num_epochs}), got {start_epoch}")

    device = pick_device(device_name)
    torch.manual_seed(config.seed)
    model = CtcModel(model_config)
    trainer = Trainer(model, tokenizer, config, device)
    history: list[EpochStats] = []
    if start_epoch > 1:
        state = load_checkpoint(checkpoint_path(exp_dir, start_epoch - 1), expected=model_config)
        check_resumable(checkpoint_path(exp_dir, start_epoch - 1), state["train_config"], config)
        model.load_state_dict(state["model"])
        trainer.load_state_dict(state["trainer"])
        history = [EpochStats(**h) for h in state["history"]]
        logging.info("Resuming from %s (step %d)", checkpoint_path(exp_dir, start_epoch - 1), trainer.step)
    elif checkpoint_path(exp_dir, 1).is_file():
        logging.warning("%s has checkpoints of an earlier run; starting over (resume with --start-epoch N)", exp_dir)
    logging.info("Model: %s, %d parameters, device %s", model_config, num_parameters(model), device)

    train_loader = make_dataloader(train_cuts, config.max_duration, shuffle=True, seed=config.seed,
                                   num_workers=config.num_workers, spec_augment=config.spec_augment,
                                   num_features=model_config.num_features)
    dev_loader = make_dataloader(dev_cuts, config.max_duration, shuffle=False, num_workers=config.num_workers)
    with SummaryWriter(str(exp_dir / "tensorboard"), purge_step=trainer.step) as tb:
        for epoch in range(start_epoch, config.num_epochs + 1):
            stats = train_epoch(trainer, train_loader, dev_loader, epoch, tb)
            history.append(stats)
            save_checkpoint(checkpoint_path(exp_dir, epoch), model, trainer=trainer.state_dict(),
                            train_config=vars(config), history=[vars(h) for h in history])
    write_history(exp_dir, history)
    marker.write()


def train_epoch(trainer: Trainer, train_loader, dev_loader, epoch: int, tb: SummaryWriter) -> EpochStats:
    config = trainer.config
    # Dropout and SpecAugment draws (torch, random, and numpy for time warping) depend on the
    # seed and the epoch only, so a resumed run repeats them exactly.
    torch.manual_seed(config.seed + epoch)
    random.seed(config.seed + epoch)
    np.random.seed(config.seed + epoch)
    train_loader.sampler.set_epoch(epoch)
    start = time.time()
    loss_sum, num_batches, skipped = 0.0, 0, 0
    progress = tqdm(train_loader, desc=f"epoch {epoch}", unit="batch", dynamic_ncols=True)
    for batch in progress:
        num_batches += 1
        loss = trainer.train_step(batch)
        if loss is None:
            skipped += 1
            logging.warning("epoch %d batch %d: non-finite loss or gradient; batch skipped (%d so far)",
                            epoch, num_batches, skipped)
            continue
        loss_sum += loss
        progress.set_postfix(loss=f"{loss:.3f}")
        if trainer.step % config.log_interval == 0:
            lr = trainer.scheduler.get_last_lr()[0]
            logging.info("epoch %d batch %d step %d: loss %.4f lr %.2e", epoch, num_batches, trainer.step, loss, lr)
            tb.add_scalar("train/loss", loss, trainer.step)
            tb.add_scalar("train/lr", lr, trainer.step)
    train_seconds = time.time() - start
    dev_loss, dev_wer = trainer.evaluate(dev_loader)
    stats = EpochStats(epoch=epoch, train_loss=loss_sum / max(num_batches - skipped, 1), dev_loss=dev_loss,
                       dev_wer=dev_wer, seconds=train_seconds, num_batches=num_batches, num_skipped=skipped,
                       lr=trainer.scheduler.get_last_lr()[0])
    tb.add_scalar("dev/loss", dev_loss, trainer.step)
    tb.add_scalar("dev/wer_greedy", dev_wer, trainer.step)
    logging.info("epoch %d: train loss %.4f, dev loss %.4f, dev WER (greedy) %.2f%%, %d batches (%d skipped), "
                 "%.1f s", epoch, stats.train_loss, dev_loss, dev_wer, num_batches, skipped, train_seconds)
    return stats


def write_history(exp_dir: Path, history: list[EpochStats]) -> None:
    """``metrics.json`` and ``training-curve.png`` (loss and dev WER per epoch)."""
    with atomic_output(exp_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps([vars(h) for h in history], indent=2) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.epoch for h in history]
    fig, (ax_loss, ax_wer) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h.train_loss for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h.dev_loss for h in history], "s-", label="dev")
    ax_loss.set(xlabel="epoch", ylabel="CTC loss per frame", title="Loss")
    ax_loss.legend()
    ax_wer.plot(epochs, [h.dev_wer for h in history], "s-", color="C1")
    ax_wer.set(xlabel="epoch", ylabel="WER (%)", title="Dev WER (greedy CTC)")
    for ax in (ax_loss, ax_wer):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(exp_dir / "training-curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def add_model_options(p: argparse.ArgumentParser) -> None:
    d = ModelConfig()
    p.add_argument("--hidden-dim", type=int, default=d.hidden_dim, help="TDNN width")
    p.add_argument("--num-layers", type=int, default=d.num_layers, help="TDNN blocks")
    p.add_argument("--subsampling-channels", type=int, default=d.subsampling_channels,
                   help="channels of the 4x subsampling convolutions")
    p.add_argument("--kernel-size", type=int, default=d.kernel_size, help="TDNN kernel (odd)")
    p.add_argument("--dilations", default=",".join(map(str, d.dilations)), help="cycled over the TDNN blocks")
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout in every TDNN block")


def model_config_from_args(args: argparse.Namespace, num_features: int, vocab_size: int) -> ModelConfig:
    return ModelConfig(num_features=num_features, vocab_size=vocab_size,
                       subsampling_channels=args.subsampling_channels, hidden_dim=args.hidden_dim,
                       num_layers=args.num_layers, kernel_size=args.kernel_size,
                       dilations=tuple(int(x) for x in args.dilations.split(",")), dropout=args.dropout)


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_dirs(p)
    p.add_argument("--num-features", type=int, default=80, help="fbank bins of the cuts")
    p.add_argument("--dev-split", default="dev", help="held-out split for the per-epoch loss and WER")
    p.add_argument("--start-epoch", type=int, default=1, help="resume from epoch-(N-1).pt")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:0, ...")
    add_dataclass_options(p, TrainConfig())
    add_model_options(p)
    add_stage_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir or args.exp_dir / "log", "train")

    def step() -> None:
        vocab_size = Tokenizer(args.lang_dir).vocab_size
        config = dataclass_from_args(TrainConfig, args)
        train(args.lang_dir, args.fbank_dir, args.exp_dir, args.corpus,
              model_config_from_args(args, args.num_features, vocab_size), config, args.start_epoch,
              args.device, args.force, args.dev_split)

    run_step(step)


if __name__ == "__main__":
    main()
