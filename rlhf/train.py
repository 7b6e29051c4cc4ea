"""Training of the baseline CTC model with k2's CTC loss, in one process or data-parallel (DDP),
with exact resume from any epoch.
"""

import contextlib
import json
import logging
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from rlhf import distributed
from rlhf.checkpoint import (SELECTED, average_states, checkpoint_path, load_checkpoint, save_checkpoint,
                             set_aside_checkpoints)
from rlhf.ctc import CtcGraphCompiler, ctc_loss, greedy_search
from rlhf.data import batch_inputs, count_batches, load_cuts, make_dataloader
from rlhf.bundle import bundle_lang
from rlhf.lang.tokenizer import Tokenizer
from rlhf.manifests import manifest_path
from rlhf.model import CtcModel, ModelConfig, num_parameters
from rlhf.scoring import Utterance, compute_wer
from rlhf.stage import StageMarker, atomic_output, record_timings


@dataclass
class TrainConfig:
    num_epochs: int = field(default=12, metadata={
        "help": "most training epochs (passes over the training cuts); --patience may stop training earlier"})
    patience: int = field(default=0, metadata={
        "help": "stop when neither the dev WER nor the dev loss has reached a new best for N epochs (the "
                "convergence rule; 0: train all --num-epochs)"})
    select: str = field(default="best", metadata={
        "help": "the epoch that selected.json names for stages 4-7: best (lowest dev WER of the judged model) or "
                "last (the last one trained: for a recipe whose only held-out split is its test set, e.g. yesno)",
        "choices": ("best", "last")})
    avg: int = field(default=1, metadata={
        "help": "judge epoch N by its weights averaged with the N-1 epochs before it, the model that decoding "
                "with --epoch N --avg K uses (epochs before the K-th are not judged)"})
    max_duration: float = field(default=120.0, metadata={
        "help": "seconds of audio per training batch (per process with --world-size N)"})
    lr: float = field(default=2e-3, metadata={"help": "peak Adam learning rate, reached after --warmup-steps"})
    warmup_steps: int = field(default=300, metadata={
        "help": "optimizer steps of linear learning-rate warm-up; then the rate follows --lr-schedule"})
    lr_schedule: str = field(default="inv-sqrt", metadata={
        "help": "the learning rate after warm-up: inv-sqrt decays as 1/sqrt(step) and never ends; cosine anneals "
                "it to 0 at the end of --num-epochs, so the last epochs settle the weights (a cosine run cannot be "
                "resumed with another --num-epochs)",
        "choices": ("inv-sqrt", "cosine")})
    lr_epochs: float = field(default=0.0, metadata={
        "help": "also decay the learning rate with the epoch, by icefall's Eden factor ((e^2 + E^2) / E^2)^-0.25 "
                "in epoch e (1 in the first epoch; E is this option; 0: no epoch decay)"})
    clip_grad_norm: float = field(default=5.0, metadata={
        "help": "largest L2 norm of a step's gradient (a larger one is scaled down to it)"})
    seed: int = field(default=42, metadata={
        "help": "seed of the initial weights, the batch order, SpecAugment and dropout"})
    log_interval: int = field(default=20, metadata={
        "help": "optimizer steps between loss lines in the log and TensorBoard"})
    num_workers: int = field(default=0, metadata={
        "help": "DataLoader worker processes (0: batches are read in the training process)"})
    spec_augment: bool = field(default=True, metadata={
        "help": "mask random time and frequency bands of the training features (SpecAugment)"})
    time_warp_factor: int = field(default=80, metadata={
        "help": "SpecAugment's time warp: the most frames the warp point moves (icefall's 80 suits 15-second "
                "utterances; short ones want less; 0: no warp)"})
    feature_masks: int = field(default=2, metadata={
        "help": "SpecAugment's frequency masks per utterance (each up to 27 of 80 bins; 0: none)"})


@dataclass
class EpochStats:
    """What one epoch did; a list of these is the training history."""
    epoch: int
    train_loss: float             # per output frame
    dev_loss: float
    dev_wer: float                # greedy CTC, percent
    seconds: float                # in timings.json, not in the saved history (saved_history)
    num_batches: int              # training steps (each of world_size batches, one per rank)
    num_skipped: int              # steps with a non-finite loss or gradient
    lr: float
    world_size: int = 1           # processes that trained this epoch
    # The judged model (this epoch averaged with the avg-1 before it; None before the avg-th
    # epoch): what the convergence rule and the selection look at.
    judged_dev_loss: Optional[float] = None
    judged_dev_wer: Optional[float] = None


# Dropout and SpecAugment draws of rank r are seeded with seed + epoch + r * RANK_SEED_STRIDE:
# rank 0's are those of a single-process run.
RANK_SEED_STRIDE = 100003

# lhotse gives every rank a batch at the end of an epoch by duplicating cuts (ids "<id>_dup<N>")
# when there are fewer left than ranks; evaluation leaves these copies out.
_DUPLICATE_CUT_ID = re.compile(r"_dup[0-9]+$")


class OutOfBatches(Exception):
    """Some rank has no batch left this epoch: every rank ends the epoch (raised on all of them).

    ``dropped``: the batches the other ranks had for this step, not trained on.
    """

    def __init__(self, dropped: int):
        super().__init__(f"a rank ran out of batches; {dropped} batch(es) of the others dropped")
        self.dropped = dropped


def learning_rate_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then decay as 1/sqrt(step)."""
    step = max(step, 1)
    return min(step / warmup_steps, math.sqrt(warmup_steps / step))


def cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then half a cosine from 1 to 0 at ``total_steps``."""
    step = max(step, 1)
    if step < warmup_steps:
        return step / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_factor(epoch: int, lr_epochs: float) -> float:
    """icefall's Eden epoch factor, ((e^2 + E^2) / E^2)^-0.25 with e the epochs completed; 1 for E = 0."""
    if lr_epochs <= 0:
        return 1.0
    done = epoch - 1
    return ((done ** 2 + lr_epochs ** 2) / lr_epochs ** 2) ** -0.25


class Trainer:
    """Training steps and evaluation of a CtcModel, in one process or as one rank of several.

    With world size > 1 (``ctx``, by default the job's) the model is wrapped in
    DistributedDataParallel (``self.network``); ``self.model`` stays the bare CtcModel, which
    checkpoints and evaluation use. Every rank must call ``train_step`` equally often.
    """

    def __init__(self, model: CtcModel, tokenizer: Tokenizer, config: TrainConfig, device: torch.device,
                 ctx: Optional[distributed.Context] = None):
        self.model = model.to(device)
        self.config = config
        self.device = device
        self.ctx = ctx or distributed.context()
        self.tokenizer = tokenizer
        self.compiler = CtcGraphCompiler(tokenizer, device)
        # DDP starts every rank from rank 0's weights and averages the gradients over ranks.
        self.network: torch.nn.Module = model
        if self.ctx.enabled:
            self.network = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.epoch = 1  # set_epoch: the Eden epoch factor depends on it (--lr-epochs)
        self.total_steps = 0  # set_total_steps: where a cosine schedule ends
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0

    def _lr_factor(self, step: int) -> float:
        if self.config.lr_schedule == "cosine":
            factor = cosine_factor(step, self.config.warmup_steps, self.total_steps)
        else:
            factor = learning_rate_factor(step, self.config.warmup_steps)
        return factor * epoch_factor(self.epoch, self.config.lr_epochs)

    def set_total_steps(self, steps_per_epoch: int) -> None:
        """The length of a cosine schedule: --num-epochs epochs of ``steps_per_epoch`` (this rank's
        batches in an epoch; the mean over ranks, so that every rank has the same rate)."""
        if self.ctx.enabled:
            steps_per_epoch = round(distributed.sum_floats(steps_per_epoch)[0] / self.ctx.world_size)
        self.total_steps = self.config.num_epochs * steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch``: the learning rate takes its Eden epoch factor (--lr-epochs) at once,
        not only after the epoch's first step."""
        self.epoch = epoch
        for group, base_lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base_lr * self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)

    def train_step(self, batch: Optional[dict]) -> Optional[float]:
        """One update; returns the loss per frame, or None when the batch was skipped.

        A batch whose loss or gradient is not finite (e.g. a transcript longer than its audio
        allows) is skipped, not propagated into the weights.

        With several ranks, each passes its own batch and the update is the one-process update on
        all of them together: one all-reduce of (frames, loss finite, has a batch, loss) gives the
        frames of all ranks, the loss is scaled so that DDP's gradient average is the gradient of
        the total loss over the total frames, and the returned loss is the total per frame. A
        non-finite loss on any rank skips the step on every rank; the gradient check follows
        DDP's all-reduce, so it agrees on every rank. ``batch`` None: this rank has no batch
        left; then every rank raises OutOfBatches (the epoch ends everywhere).
        """
        self.network.train()
        if batch is not None:
            features, num_frames, texts, _ = batch_inputs(batch, self.device)
            log_probs, lengths = self.network(features, num_frames)
            loss = ctc_loss(log_probs, lengths, texts, self.compiler)
            frames, finite, loss_sum = lengths.sum().item(), bool(torch.isfinite(loss).all()), loss.sum().item()
        else:
            if self.ctx.enabled:
                self._idle_forward()
            frames, finite, loss_sum = 0, True, 0.0
        self.optimizer.zero_grad()
        totals = torch.tensor([frames, float(finite), float(batch is not None), loss_sum], dtype=torch.float64,
                              device=self.device)
        total_frames, num_finite, num_batches, total_loss = distributed.all_reduce_sum(totals).tolist()
        if num_batches < self.ctx.world_size:
            raise OutOfBatches(int(num_batches))
        if num_finite < self.ctx.world_size:
            return None
        # The rank's loss over the mean frames per rank: DDP divides the summed gradients by the
        # world size, which leaves the gradient of the total loss over the total frames.
        (loss.sum() / (total_frames / self.ctx.world_size)).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad()
            return None
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return total_loss / total_frames

    def _idle_forward(self) -> None:
        """A forward pass of DDP on a dummy input, for a rank without a batch: DDP's forward may
        hold collectives (its one-time bucket rebuild), which the ranks with a batch run in theirs.
        No backward follows (the step ends the epoch on every rank)."""
        features = torch.zeros(1, 16, self.model.config.num_features, device=self.device)
        self.network(features, torch.full((1,), 16, dtype=torch.int64, device=self.device))

    @torch.no_grad()
    def evaluate(self, loader) -> tuple[float, float]:
        """Loss per frame and greedy-CTC WER (percent) on a held-out set.

        With several ranks ``loader`` holds this rank's share (make_dataloader with the world size
        and rank); the loss sums are all-reduced and the utterances gathered, so every rank returns
        the numbers of the whole set. The copies of cuts that lhotse adds to give every rank a
        batch (ids ending in ``_dup<N>``) count neither in the loss nor in the WER.
        """
        self.model.eval()
        total_loss, total_frames, utts = 0.0, 0, []
        for batch in loader:
            features, num_frames, texts, cut_ids = batch_inputs(batch, self.device)
            log_probs, lengths = self.model(features, num_frames)
            loss = ctc_loss(log_probs, lengths, texts, self.compiler)
            keep = torch.isfinite(loss)
            original = [not (self.ctx.enabled and _DUPLICATE_CUT_ID.search(c)) for c in cut_ids]
            if not all(original):
                keep &= torch.tensor(original, device=keep.device)
            total_loss += loss[keep].sum().item()
            total_frames += lengths[keep.to(lengths.device)].sum().item()
            for cut_id, text, hyp, ok in zip(cut_ids, texts, greedy_search(log_probs, lengths), original):
                if ok:
                    utts.append(Utterance(cut_id, text.split(), self.tokenizer.decode(hyp).split()))
        if self.ctx.enabled:
            total_loss, total_frames = distributed.sum_floats(total_loss, total_frames)
            # Every rank's utterances (each cut once), so every rank computes the same WER.
            utts = list({u.cut_id: u for part in distributed.gather_objects(utts) for u in part}.values())
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
# A cosine schedule ends at --num-epochs, so there --num-epochs changes every epoch's rate.
RESUMABLE_WITH_CHANGES = {"num_epochs", "patience", "select", "log_interval", "num_workers"}


def check_resumable(path: Path, saved: dict, config: TrainConfig) -> None:
    """Refuse to resume from a checkpoint whose training options would change the result."""
    resumable = RESUMABLE_WITH_CHANGES - ({"num_epochs"} if config.lr_schedule == "cosine" else set())
    # An option newer than the checkpoint had its default then.
    saved = {**vars(TrainConfig()), **saved}
    diffs = [f"--{k.replace('_', '-')}: checkpoint has {v!r}, options say {getattr(config, k)!r}"
             for k, v in saved.items() if k not in resumable and getattr(config, k) != v]
    if diffs:
        raise ValueError(f"{path} was trained with other options ({'; '.join(diffs)}); resume with the same ones")


def train(lang_dir: Path, fbank_dir: Path, exp_dir: Path, corpus: str, model_config: ModelConfig,
          config: TrainConfig, start_epoch: int = 1, device_name: str = "auto", force: bool = False,
          dev_split: str = "dev") -> None:
    if config.num_epochs < 1:
        raise ValueError(f"--num-epochs must be above 0, got {config.num_epochs}")
    if start_epoch < 1 or start_epoch > config.num_epochs:
        raise ValueError(f"--start-epoch must be between 1 and --num-epochs ({config.num_epochs}), got {start_epoch}")
    if not 1 <= config.avg <= config.num_epochs or config.patience < 0:
        raise ValueError(f"--avg must be between 1 and --num-epochs ({config.num_epochs}) and --patience at least 0; "
                         f"got --avg {config.avg}, --patience {config.patience}")
    train_cuts_path = manifest_path(fbank_dir, corpus, "cuts", "train")
    dev_cuts_path = manifest_path(fbank_dir, corpus, "cuts", dev_split)
    tokenizer = Tokenizer(lang_dir)
    if model_config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"model vocab_size {model_config.vocab_size} != {tokenizer.vocab_size} tokens in {lang_dir}")
    train_cuts, dev_cuts = load_cuts(train_cuts_path), load_cuts(dev_cuts_path)
    ctx = distributed.context()
    # The lang files and feature options go with the model, so exp_dir can decode on its own.
    if ctx.is_main:
        bundle_lang(lang_dir, train_cuts_path, exp_dir, force)
    distributed.barrier()
    options = {"model": model_config.to_dict(), "train": vars(config), "corpus": corpus, "dev_split": dev_split}
    marker = StageMarker(exp_dir, "train", options, [train_cuts_path, dev_cuts_path, lang_dir / "tokens.txt"])
    if start_epoch == 1 and distributed.main_decides(lambda: marker.skip_if_complete(force)):
        return
    if ctx.is_main:
        marker.invalidate()
        (exp_dir / SELECTED).unlink(missing_ok=True)

    device = ctx.device(device_name)
    # The same initial weights on every rank (DDP also copies rank 0's to the others).
    torch.manual_seed(config.seed)
    model = CtcModel(model_config)
    trainer = Trainer(model, tokenizer, config, device)
    history: list[EpochStats] = []
    if start_epoch > 1:
        # Every rank reads the checkpoint (ranks share the file system); any world size may resume it.
        state = load_checkpoint(checkpoint_path(exp_dir, start_epoch - 1), expected=model_config)
        check_resumable(checkpoint_path(exp_dir, start_epoch - 1), state["train_config"], config)
        model.load_state_dict(state["model"])
        trainer.load_state_dict(state["trainer"])
        history = [EpochStats(**{"seconds": 0.0, **h}) for h in state["history"]]
        logging.info("Resuming from %s (step %d)", checkpoint_path(exp_dir, start_epoch - 1), trainer.step)
    if ctx.is_main:  # this run writes epoch-<start_epoch>.pt on: older ones must not be picked or averaged
        set_aside_checkpoints(exp_dir, start_epoch)
    logging.info("Model: %s, %d parameters, device %s, world size %d", model_config, num_parameters(model), device,
                 ctx.world_size)

    # Every rank takes its share of the batches (of the dev set too); the batch order depends
    # on the seed, the epoch and the world size.
    train_loader = make_dataloader(train_cuts, config.max_duration, shuffle=True, seed=config.seed,
                                   num_workers=config.num_workers, spec_augment=config.spec_augment,
                                   time_warp_factor=config.time_warp_factor, num_feature_masks=config.feature_masks,
                                   num_features=model_config.num_features, world_size=ctx.world_size, rank=ctx.rank)
    dev_loader = make_dataloader(dev_cuts, config.max_duration, shuffle=False, num_workers=config.num_workers,
                                 world_size=ctx.world_size, rank=ctx.rank)
    if config.lr_schedule == "cosine":
        train_loader.sampler.set_epoch(1)
        trainer.set_total_steps(count_batches(train_loader))
    writer = (SummaryWriter(str(exp_dir / "tensorboard"), purge_step=trainer.step) if ctx.is_main
              else contextlib.nullcontext())
    with writer as tb:
        for epoch in range(start_epoch, config.num_epochs + 1):
            if select_epoch(history, config.patience).converged:
                break
            stats = train_epoch(trainer, train_loader, dev_loader, epoch, tb)
            judge_epoch(trainer, stats, exp_dir, config.avg, dev_loader, tb)
            history.append(stats)
            if ctx.is_main:
                save_checkpoint(checkpoint_path(exp_dir, epoch), model, trainer=trainer.state_dict(),
                                train_config=vars(config), history=saved_history(history))
                record_timings(exp_dir, f"train-epoch-{epoch}", {"seconds": stats.seconds})
                logging.info("Wrote %s", checkpoint_path(exp_dir, epoch))
    selection = select_epoch(history, config.patience, config.select)
    if selection.epoch is None:
        raise ValueError(f"no epoch could be judged: --avg {config.avg} is more than the {len(history)} epoch(s) "
                         f"trained; lower --avg or raise --num-epochs")
    logging.info("%s; selected epoch %d (%s; averaged over %d): dev WER %.2f%%", selection.reason(config.patience),
                 selection.epoch, config.select, config.avg, history[selection.epoch - 1].judged_dev_wer)
    if ctx.is_main:
        write_history(exp_dir, history, selection.epoch)
        with atomic_output(exp_dir / SELECTED) as tmp:
            tmp.write_text(json.dumps({"epoch": selection.epoch, "avg": config.avg,
                                       "dev_wer": history[selection.epoch - 1].judged_dev_wer,
                                       "dev_loss": history[selection.epoch - 1].judged_dev_loss,
                                       "epochs_trained": len(history), "converged": selection.converged,
                                       "patience": config.patience, "select": config.select}, indent=2) + "\n")
        marker.write()


@dataclass
class Selection:
    epoch: Optional[int]          # the judged epoch with the lowest dev WER (None: none judged yet)
    last_progress: Optional[int]  # the last epoch with a new best dev WER or dev loss
    last_judged: Optional[int]
    converged: bool               # no progress for --patience epochs

    def reason(self, patience: int) -> str:
        if self.converged:
            return f"converged: no new best dev WER or loss in the {patience} epochs after epoch {self.last_progress}"
        return f"not converged after {self.last_judged} epochs (last new best: epoch {self.last_progress})"


def select_epoch(history: list[EpochStats], patience: int, select: str = "best") -> Selection:
    """The convergence rule and the selection, from the judged (averaged) models' dev numbers.

    Progress is a new lowest dev WER or a new lowest dev loss: on the CTC plateau the WER stays
    near 100% while the loss falls, and the loss alone can creep down while the WER no longer
    moves. Training has converged when ``patience`` (> 0) judged epochs in a row made no
    progress. The selected epoch has the lowest dev WER (ties: lower dev loss, then earlier);
    with ``select`` "last", the last judged epoch.
    """
    judged = [h for h in history if h.judged_dev_wer is not None]
    if not judged:
        return Selection(None, None, None, False)
    best_wer = best_loss = math.inf
    last_progress = judged[0].epoch
    for h in judged:
        if h.judged_dev_wer < best_wer or h.judged_dev_loss < best_loss:
            last_progress = h.epoch
        best_wer, best_loss = min(best_wer, h.judged_dev_wer), min(best_loss, h.judged_dev_loss)
    best = min(judged, key=lambda h: (h.judged_dev_wer, h.judged_dev_loss, h.epoch))
    converged = patience > 0 and judged[-1].epoch - last_progress >= patience
    chosen = judged[-1] if select == "last" else best
    return Selection(chosen.epoch, last_progress, judged[-1].epoch, converged)


def judge_epoch(trainer: Trainer, stats: EpochStats, exp_dir: Path, avg: int, dev_loader,
                tb: Optional[SummaryWriter]) -> None:
    """Dev loss and WER of this epoch's weights averaged with the ``avg``-1 epochs before it (read
    from their checkpoints), into ``stats``; the training weights are left as they were."""
    if stats.epoch < avg:
        return
    if avg == 1:
        stats.judged_dev_loss, stats.judged_dev_wer = stats.dev_loss, stats.dev_wer
        return
    model = trainer.model
    earlier = [load_checkpoint(checkpoint_path(exp_dir, e), expected=model.config)["model"]
               for e in range(stats.epoch - avg + 1, stats.epoch)]
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(average_states(trained, earlier))
    stats.judged_dev_loss, stats.judged_dev_wer = trainer.evaluate(dev_loader)
    model.load_state_dict(trained)
    logging.info("epoch %d averaged with the %d before it: dev loss %.4f, dev WER (greedy) %.2f%%",
                 stats.epoch, avg - 1, stats.judged_dev_loss, stats.judged_dev_wer)
    if tb is not None:
        tb.add_scalar("dev/wer_greedy_averaged", stats.judged_dev_wer, trainer.step)


def _warn(msg: str, *args) -> None:
    """A warning that every rank has (the same decision): on the console once, from rank 0."""
    logging.log(logging.WARNING if distributed.context().is_main else logging.INFO, msg, *args)


def train_epoch(trainer: Trainer, train_loader, dev_loader, epoch: int, tb: Optional[SummaryWriter]) -> EpochStats:
    """One epoch and the dev evaluation after it; ``tb`` is None on the ranks that write no TensorBoard."""
    config, ctx = trainer.config, trainer.ctx
    # Dropout and SpecAugment draws (torch, random, and numpy for time warping) depend on the
    # seed, the epoch and the rank only, so a resumed run repeats them exactly.
    seed = config.seed + epoch + RANK_SEED_STRIDE * ctx.rank
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    train_loader.sampler.set_epoch(epoch)
    trainer.set_epoch(epoch)
    start = time.time()
    loss_sum, num_batches, skipped = 0.0, 0, 0
    progress = distributed.progress_bar(desc=f"epoch {epoch}", unit="batch",
                                        total=count_batches(train_loader) if ctx.is_main else None)
    batches = iter(train_loader)
    while True:
        try:
            loss = trainer.train_step(next(batches, None))
        except OutOfBatches as e:
            if e.dropped:
                _warn("epoch %d: a rank ran out of batches after %d steps; the epoch ends on every rank and "
                      "%d batch(es) of the other ranks are dropped", epoch, num_batches, e.dropped)
            break
        num_batches += 1
        progress.update()
        if loss is None:
            skipped += 1
            _warn("epoch %d batch %d: non-finite loss or gradient; batch skipped (%d so far)",
                  epoch, num_batches, skipped)
            continue
        loss_sum += loss
        progress.set_postfix(loss=f"{loss:.3f}")
        if trainer.step % config.log_interval == 0:
            lr = trainer.scheduler.get_last_lr()[0]
            logging.info("epoch %d batch %d step %d: loss %.4f lr %.2e", epoch, num_batches, trainer.step, loss, lr)
            if tb is not None:
                tb.add_scalar("train/loss", loss, trainer.step)
                tb.add_scalar("train/lr", lr, trainer.step)
    progress.close()
    train_seconds = time.time() - start
    dev_loss, dev_wer = trainer.evaluate(dev_loader)
    stats = EpochStats(epoch=epoch, train_loss=loss_sum / max(num_batches - skipped, 1), dev_loss=dev_loss,
                       dev_wer=dev_wer, seconds=train_seconds, num_batches=num_batches, num_skipped=skipped,
                       lr=trainer.scheduler.get_last_lr()[0], world_size=ctx.world_size)
    if tb is not None:
        tb.add_scalar("dev/loss", dev_loss, trainer.step)
        tb.add_scalar("dev/wer_greedy", dev_wer, trainer.step)
    logging.info("epoch %d: train loss %.4f, dev loss %.4f, dev WER (greedy) %.2f%%, %d batches (%d skipped), "
                 "%.1f s", epoch, stats.train_loss, dev_loss, dev_wer, num_batches, skipped, train_seconds)
    return stats


def saved_history(history: list[EpochStats]) -> list[dict]:
    """The history as checkpoints and metrics.json keep it: without the epochs' seconds (timings.json),
    so that the same run gives the same bytes."""
    return [{k: v for k, v in vars(h).items() if k != "seconds"} for h in history]


def write_history(exp_dir: Path, history: list[EpochStats], selected: int) -> None:
    """``metrics.json`` and ``training-curve.png`` (loss and dev WER per epoch, the selected epoch marked)."""
    with atomic_output(exp_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(saved_history(history), indent=2) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.epoch for h in history]
    judged = [h for h in history if h.judged_dev_wer is not None]
    fig, (ax_loss, ax_wer) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h.train_loss for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h.dev_loss for h in history], "s-", label="dev")
    ax_loss.plot([h.epoch for h in judged], [h.judged_dev_loss for h in judged], "^-", label="dev, averaged")
    ax_loss.set(xlabel="epoch", ylabel="CTC loss per frame", title="Loss")
    ax_wer.plot(epochs, [h.dev_wer for h in history], "s-", label="epoch's weights")
    ax_wer.plot([h.epoch for h in judged], [h.judged_dev_wer for h in judged], "^-", label="averaged (judged)")
    ax_wer.axvline(selected, color="grey", linestyle=":", label=f"selected: epoch {selected}")
    ax_wer.set(xlabel="epoch", ylabel="WER (%)", title="Dev WER (greedy CTC)")
    for ax in (ax_loss, ax_wer):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_output(exp_dir / "training-curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
