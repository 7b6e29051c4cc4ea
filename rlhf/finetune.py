"""Stage 7's optimization loop: one method (objective x optimizer) from the averaged baseline,
with dev evaluation, the best model, resumable state, and the decoding of the best model.
"""

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from rlhf import distributed
from rlhf.checkpoint import average_checkpoints, averaged_checkpoints, model_digest, save_checkpoint
from rlhf.ctc import CtcGraphCompiler
from rlhf.compare import compare
from rlhf.decode import METHODS, DevEvaluator, LatticeConfig, decode
from rlhf.hf import HessianFree, HessianFreeConfig
from rlhf.lang.tokenizer import Tokenizer
from rlhf.lattice_batches import LatticeBatch, SplitLattices, length_batches, load_split_lattices, time_masked
from rlhf.manifests import manifest_path
from rlhf.model import CtcModel
from rlhf.regenerate_lattices import LatticeRegenerator, stage5_graph
from rlhf.rl.sequence_objective import CURVATURES, OBJECTIVES, SequenceObjective
from rlhf.rl.values import REWARD_MODES
from rlhf.stage import StageMarker, atomic_output, file_digest, options_match, save_torch

OPTIMIZERS = ("hf", "adam")
# Hessian-free compares held-out values of one deterministic function of theta: k2's mwer_loss
# draws its paths anew on every call, and ctc is the train-on control.
HF_OBJECTIVES = ("rl", "mmi")
# FinetuneConfig's options that only one optimizer reads (HessianFreeConfig's are all hf's).
HF_ONLY_OPTIONS = ("grad_fraction", "curvature_fraction", "heldout_utts", "curvature")
ADAM_ONLY_OPTIONS = ("lr",)
# Options recorded only when on: runs made before they existed stay complete.
RECORDED_WHEN_ON = ("regenerate_lattices",)


@dataclass
class FinetuneConfig:
    objective: str = field(default="rl", metadata={
        "choices": OBJECTIVES,
        "help": "the loss: rl (minus the expected stage-6 advantage under the re-scored lattice posterior), "
                "mwer (k2's mwer_loss on the re-scored lattices), mmi (lattice MMI: the reference's CTC graph against "
                "the re-scored lattice) or ctc (the baseline's CTC loss)"})
    optimizer: str = field(default="hf", metadata={
        "choices": OPTIMIZERS, "help": "hf (Hessian-free; the rl and mmi objectives) or adam"})
    reward: str = field(default="frame", metadata={
        "choices": REWARD_MODES,
        "help": "the stage-6 values of the rl objective: frame (agreement with the forced alignment; loss per "
                "frame) or edit (minus the word errors; loss per reference word)"})
    kappa: float = field(default=1.0, metadata={
        "help": "the acoustic scale (Kaldi's --acwt): re-scored arc weight = kappa * log p(label | frame) + "
                "graph score"})
    ctc_weight: float = field(default=0.0, metadata={
        "help": "weight of the CTC loss added to a lattice objective (rl, mwer, mmi) as a regularizer that keeps "
                "ctc-greedy decoding in step (0: none)"})
    curvature: str = field(default="softmax", metadata={
        "choices": CURVATURES,
        "help": "hf's output curvature in G v: softmax (per-frame Fisher of the network's output) or occupancy "
                "(of the lattice's token posterior)"})
    time_masks: bool = field(default=False, metadata={
        "help": "mask spans of the training batches' input in time as stage 3's SpecAugment did, anew for every "
                "update (hf: every iteration; the held-out and dev sets stay clean) (true/false)"})
    num_paths: int = field(default=8, metadata={"help": "paths sampled per lattice (edit reward, mwer)"})
    trainable: str = field(default="all", metadata={
        "help": "the parameters fine-tuned: all, or top-K (the output layer and the last K-1 encoder blocks)"})
    max_iters: int = field(default=12, metadata={"help": "stop after this many HF iterations (adam: updates)"})
    time_budget: float = field(default=0.0, metadata={
        "help": "... or after this many seconds of optimization, evaluation excluded (0: no limit)"})
    eval_every: int = field(default=1, metadata={"help": "dev WER every this many iterations (adam: updates) ..."})
    eval_interval: float = field(default=0.0, metadata={
        "help": "... and at least every this many seconds of optimization (0: off)"})
    grad_fraction: float = field(default=0.25, metadata={
        "help": "hf: share of the training batches in each gradient, drawn anew every iteration, in (0, 1]"})
    curvature_fraction: float = field(default=0.1, metadata={
        "help": "hf: share of the gradient's utterances in the curvature sample, in (0, 1]"})
    heldout_utts: int = field(default=150, metadata={
        "help": "hf: training utterances kept out of the gradient for rho, backtracking and the line search "
                "(at most a fifth of them)"})
    batch_frames: int = field(default=12000, metadata={
        "help": "padded network output frames (40 ms each) per lattice batch; smaller: more batches to share "
                "out with --world-size"})
    lr: float = field(default=1e-4, metadata={"help": "adam: learning rate"})
    seed: int = field(default=0, metadata={
        "help": "seed of the held-out set, the batch draws, the sampled paths and Adam's batch order"})
    max_utts: int = field(default=0, metadata={"help": "use only the first N training lattices (0: all)"})
    regenerate_lattices: bool = field(default=False, metadata={
        "help": "decode the lattices of every update's training batches (hf: and of its held-out batches) anew "
                "with the current model, with stage 5's graph and beams, and redo their stage-6 values, instead "
                "of using the baseline's stored ones; the decoding counts in the time budget (true/false)"})

    def check(self) -> None:
        for name, value, allowed in (("--objective", self.objective, OBJECTIVES),
                                     ("--optimizer", self.optimizer, OPTIMIZERS),
                                     ("--reward", self.reward, REWARD_MODES),
                                     ("--curvature", self.curvature, CURVATURES)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
        if self.optimizer == "hf" and self.objective not in HF_OBJECTIVES:
            raise ValueError(f"--optimizer hf runs the {' and '.join(HF_OBJECTIVES)} objectives, not "
                             f"{self.objective!r} (use --optimizer adam)")
        if self.trainable != "all" and not (self.trainable.startswith("top-") and self.trainable[4:].isdigit()
                                            and int(self.trainable[4:]) >= 1):
            raise ValueError(f"--trainable must be 'all' or 'top-K' with K >= 1, got {self.trainable!r}")
        if not 0.0 < self.grad_fraction <= 1.0 or not 0.0 < self.curvature_fraction <= 1.0:
            raise ValueError("--grad-fraction and --curvature-fraction must be in (0, 1]")
        if self.max_iters < 0 or self.time_budget < 0 or self.eval_every < 1 or self.kappa <= 0:
            raise ValueError("--max-iters and --time-budget must be >= 0, --eval-every >= 1, --kappa > 0")
        if self.regenerate_lattices and self.objective == "ctc":
            raise ValueError("--regenerate-lattices is for the lattice objectives (rl, mwer, mmi); ctc reads no "
                             "lattices")

    @property
    def name(self) -> str:
        """The default output directory name, e.g. rl-hf-frame, mwer-adam."""
        return f"{self.objective}-{self.optimizer}" + (f"-{self.reward}" if self.objective == "rl" else "")

    def read_options(self) -> dict:
        """The options this method reads: those of the other optimizer are left out, so that e.g.
        another --grad-fraction does not redo a finished Adam run (the stage marker's options), and
        so is an option of RECORDED_WHEN_ON that is off."""
        ignored = ADAM_ONLY_OPTIONS if self.optimizer == "hf" else HF_ONLY_OPTIONS
        return {k: v for k, v in asdict(self).items()
                if k not in ignored and not (k in RECORDED_WHEN_ON and not v)}

    def run_options(self) -> dict:
        """Options that change the optimization path (not where or how long it stops)."""
        return {k: v for k, v in self.read_options().items() if k not in ("max_iters", "time_budget")}


class Timed:
    """A function that counts its calls and the seconds spent in them (an HF iteration's breakdown)."""

    def __init__(self, fn: Callable):
        self.fn, self.calls, self.seconds = fn, 0, 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - start


def trainable_parameters(model: CtcModel, trainable: str) -> list[torch.nn.Parameter]:
    """Freeze all but the chosen parameters; returns those left trainable, in model order."""
    if trainable == "all":
        modules = [model]
    else:
        k = int(trainable[4:])
        layers = model.encoder_layers()
        top_blocks = layers[len(layers) - (k - 1):] if k > 1 else []
        modules = [model.final_norm, model.output] + top_blocks
    chosen = {id(p) for m in modules for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    return [p for p in model.parameters() if p.requires_grad]


@dataclass
class Progress:
    """What a run has done so far; saved in state.pt and progress.json."""
    iteration: int = 0
    seconds: float = 0.0                       # optimization time (evaluation excluded)
    best_wer: float = float("inf")
    best_iteration: int = -1
    history: list[dict] = field(default_factory=list)   # one entry per dev evaluation
    steps: list[dict] = field(default_factory=list)     # one entry per HF iteration (adam: none)


def _subset(items: list, fraction: float, rng: random.Random) -> list:
    """A seeded random share of a list (at least one item), in the original order."""
    if fraction >= 1.0:
        return list(items)
    k = max(1, round(fraction * len(items)))
    return [items[i] for i in sorted(rng.sample(range(len(items)), k))]


class Finetuner:
    """Runs one method (objective x optimizer) with evaluation, best model, state and resume."""

    def __init__(self, model: CtcModel, data: SplitLattices, config: FinetuneConfig, objective: SequenceObjective,
                 evaluator: DevEvaluator, out_dir: Path, hf_config: HessianFreeConfig,
                 regenerator: Optional[LatticeRegenerator] = None):
        self.model = model
        self.data = data
        self.regenerator = regenerator
        self.config = config
        self.objective = objective
        self.evaluator = evaluator
        self.out_dir = out_dir
        self.progress = Progress()
        rng = random.Random(config.seed)
        utts = list(range(data.num_utts))
        heldout = sorted(rng.sample(utts, min(config.heldout_utts, data.num_utts // 5))) \
            if config.optimizer == "hf" else []
        held = set(heldout)
        self.train_utts = [u for u in utts if u not in held]
        self.train_ids = length_batches(data.shard.num_frames, self.train_utts, config.batch_frames)
        self.heldout_ids = length_batches(data.shard.num_frames, heldout, config.batch_frames)
        device = objective.device
        self.train_batches = [data.batch(b).to(device) for b in self.train_ids]
        self.heldout_batches = [data.batch(b).to(device) for b in self.heldout_ids]
        logging.info("%d training batches (%d utterances), %d held-out batches (%d utterances)",
                     len(self.train_batches), len(self.train_utts), len(self.heldout_batches), len(heldout))
        if config.optimizer == "hf":
            self.optimizer = HessianFree(objective.params, hf_config)
        else:
            self.optimizer = torch.optim.Adam(objective.params, lr=config.lr)

    # -- state ---------------------------------------------------------------------------
    def save_state(self) -> None:
        if not distributed.context().is_main:
            return
        state = {"options": self.config.run_options(), "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "progress": asdict(self.progress)}
        save_torch(state, self.out_dir / "state.pt")
        with atomic_output(self.out_dir / "progress.json") as tmp:
            tmp.write_text(json.dumps({"options": asdict(self.config), **asdict(self.progress)}, indent=2) + "\n")

    def try_resume(self) -> bool:
        path = self.out_dir / "state.pt"
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu")
        if not options_match(state.get("options"), self.config.run_options()):
            logging.warning("%s was written with other options; starting over", path)
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(**state["progress"])
        logging.info("resumed from %s at iteration %d (%.0f s of optimization)", path, self.progress.iteration,
                     self.progress.seconds)
        return True

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, loss: Optional[float] = None) -> None:
        wer = self.evaluator.wer()
        p = self.progress
        p.history.append({"iteration": p.iteration, "seconds": p.seconds, "dev_wer": wer, "loss": loss})
        logging.info("iteration %d, %.0f s: dev WER %.2f%%", p.iteration, p.seconds, wer)
        if wer < p.best_wer:
            p.best_wer, p.best_iteration = wer, p.iteration
            if distributed.context().is_main:
                save_checkpoint(self.out_dir / "best.pt", self.model, iteration=p.iteration, dev_wer=wer)

    def done(self) -> bool:
        c, p = self.config, self.progress
        return p.iteration >= c.max_iters or (c.time_budget > 0 and p.seconds >= c.time_budget)

    def run(self) -> Progress:
        if not self.try_resume() or not self.progress.history:
            self.evaluate()  # the starting point (the baseline)
            self.save_state()
        last_eval_seconds = self.progress.history[-1]["seconds"]
        bar = self.progress_bar()
        while not self.done():
            start = time.time()
            loss = self.hf_iteration() if self.config.optimizer == "hf" else self.adam_update()
            # Every rank computed the same step; rank 0's copy is the one, so ranks never drift.
            distributed.broadcast_parameters(self.objective.params)
            # Rank 0's clock decides time budgets and evaluation for all ranks.
            seconds = distributed.broadcast_object(time.time() - start)
            self.progress.seconds += seconds
            self.progress.iteration += 1
            if self.config.time_budget > 0:
                bar.update(min(seconds, bar.total - bar.n))
                bar.set_postfix(iter=self.progress.iteration, loss=f"{loss:.4f}")
            else:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
            interval = self.config.eval_interval
            if (self.progress.iteration % self.config.eval_every == 0 or self.done()
                    or (interval > 0 and self.progress.seconds - last_eval_seconds >= interval)):
                self.evaluate(loss)
                last_eval_seconds = self.progress.seconds
            self.save_state()
        bar.close()
        return self.progress

    def progress_bar(self):
        """What bounds the run: seconds of ``--time-budget`` when there is one (the iterations then
        follow the bar), else ``--max-iters`` iterations."""
        c, p = self.config, self.progress
        if c.time_budget > 0:
            return distributed.progress_bar(
                total=c.time_budget, initial=min(p.seconds, c.time_budget), desc=c.name, unit="s",
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of the time budget [{elapsed}<{remaining}{postfix}]")
        return distributed.progress_bar(total=c.max_iters, initial=p.iteration, desc=c.name, unit="iter")

    # -- one step of each optimizer ----------------------------------------------------------
    def hf_iteration(self) -> float:
        c, obj = self.config, self.objective
        it = self.progress.iteration
        start = time.perf_counter()
        rng = random.Random(f"{c.seed}-{it}")
        ids = _subset(list(range(len(self.train_batches))), c.grad_fraction, rng)
        grad_batches = [self.augmented(self.lattices_now(self.train_batches[i]), it, i) for i in ids]
        grad_utts = [u for b in grad_batches for u in b.utts]
        curvature_utts = _subset(grad_utts, c.curvature_fraction, rng)
        # Each rank takes every world_size-th batch of gradient, curvature and held-out sets;
        # the sums are all-reduced, so CG and damping see the same numbers on every rank.
        ctx = distributed.context()
        curvature_ids = length_batches(self.data.shard.num_frames, curvature_utts, c.batch_frames)
        curvature = [obj.curvature_operator(self.augmented(self.lattices_now(self.data.batch(b).to(obj.device)),
                                                           it, "curvature", k))
                     for k, b in ctx.shard(list(enumerate(curvature_ids)))]
        heldout_batches = [self.lattices_now(b) for b in self.heldout_batches]
        heldout_ids = [-1 - i for i in range(len(heldout_batches))]
        if c.objective == "rl" and c.reward == "edit":  # this iteration's held-out paths, drawn at theta
            with torch.no_grad():
                for b, i in zip(ctx.shard(heldout_batches), ctx.shard(heldout_ids)):
                    log_probs, _, index = obj.forward(b)
                    obj.paths[i] = obj.draw_paths(b, obj.arc_weights(log_probs, index, b), it, i)

        # the new lattices (--regenerate-lattices), the curvature operators' forward passes, edit paths
        setup_seconds = time.perf_counter() - start

        @Timed
        def example_gradients_fn() -> torch.Tensor:  # --hf-preconditioner fisher: one row per curvature utterance
            mine = [(k, self.augmented(self.lattices_now(self.data.batch([u]).to(obj.device)), it, "fisher", k))
                    for k, u in ctx.shard(list(enumerate(curvature_utts)))]
            return obj.example_gradients(mine, len(curvature_utts), it)

        rows = example_gradients_fn() if self.optimizer.config.preconditioner == "fisher" else None

        @Timed
        def gradient_fn():
            loss, grad, squares = obj.gradient(grad_batches, ids, it)
            return loss, grad, squares if rows is None else rows

        @Timed
        def curvature_fn(v: torch.Tensor) -> torch.Tensor:
            product = torch.zeros_like(v)
            for op in curvature:
                product += op(v)
            return distributed.all_reduce_sum(product) / len(curvature_ids)

        @Timed
        def heldout_fn() -> float:
            return obj.value(heldout_batches, heldout_ids)

        @Timed
        def gradient_value_fn() -> float:  # rho on the gradient's batches (--hf-rho-data gradient)
            return obj.value(grad_batches, ids)

        info = self.optimizer.step(gradient_fn, curvature_fn, heldout_fn, gradient_value_fn)
        breakdown = {"setup": {"seconds": setup_seconds, "calls": 1}}
        breakdown.update({name: {"seconds": fn.seconds, "calls": fn.calls} for name, fn in
                          (("gradient", gradient_fn), ("example_gradients", example_gradients_fn),
                           ("curvature", curvature_fn), ("heldout", heldout_fn),
                           ("gradient_value", gradient_value_fn))})
        self.progress.steps.append({**asdict(info), "seconds_total": self.progress.seconds + info.seconds,
                                    "grad_utts": len(grad_utts), "curvature_utts": len(curvature_utts),
                                    "breakdown": breakdown})
        return info.heldout_after

    def lattices_now(self, batch: LatticeBatch) -> LatticeBatch:
        """``batch`` with the current model's lattices (--regenerate-lattices), or as stored."""
        return self.regenerator(batch) if self.regenerator is not None else batch

    def augmented(self, batch: LatticeBatch, *key) -> LatticeBatch:
        """``batch`` with this ``key``'s time masks (--time-masks), or as it is."""
        if not self.config.time_masks:
            return batch
        generator = torch.Generator().manual_seed(random.Random(f"{self.config.seed}-mask-{key}").getrandbits(63))
        return time_masked(batch, generator)

    def update_batches(self, update: int) -> list[int]:
        """The training batches of Adam update ``update``: the next world_size of a seeded
        shuffle per epoch (one per rank)."""
        world_size, n = distributed.context().world_size, len(self.train_batches)
        ids = []
        for position in range(update * world_size, (update + 1) * world_size):
            epoch, k = divmod(position, n)
            order = list(range(n))
            random.Random(f"{self.config.seed}-epoch-{epoch}").shuffle(order)
            ids.append(order[k])
        return ids

    def adam_update(self) -> float:
        """One update on one batch per rank; the gradients are all-reduced, normalized over all."""
        c, obj, ctx = self.config, self.objective, distributed.context()
        ids = self.update_batches(self.progress.iteration)
        batch_id = ids[ctx.rank]
        batch = self.augmented(self.lattices_now(self.train_batches[batch_id]), self.progress.iteration, batch_id)
        norm = obj.normalizer([self.train_batches[i] for i in ids])
        torch.manual_seed(c.seed * 1_000_003 + self.progress.iteration * ctx.world_size + ctx.rank)
        self.model.train(c.objective == "ctc")  # training on with CTC keeps the baseline's dropout
        loss = obj.batch_loss(batch, batch_id, sample_paths_now=True, iteration=self.progress.iteration) / norm
        self.model.eval()
        finite, total = distributed.sum_floats(float(torch.isfinite(loss)), float(loss.detach()))
        if finite < ctx.world_size:
            logging.warning("non-finite loss on batch(es) %s; update skipped", ids)
            return float("nan")
        self.optimizer.zero_grad()
        loss.backward()
        for p in obj.params:
            distributed.all_reduce_sum(p.grad)
        torch.nn.utils.clip_grad_norm_(obj.params, 5.0)
        self.optimizer.step()
        return total


def finetune(lang_dir: Path, fbank_dir: Path, exp_dir: Path, corpus: str, epoch: int, avg: int,
             config: FinetuneConfig, hf_config: HessianFreeConfig, lattice_config: LatticeConfig,
             out_dir: Optional[Path] = None, max_duration: float = 200.0, device_name: str = "auto",
             force: bool = False, dev_split: str = "dev") -> Path:
    """Stage 7 for one method; returns its output directory (best.pt, progress.json)."""
    config.check()
    lattice_config.check()
    out_dir = Path(out_dir or exp_dir / "finetune" / config.name)
    lattice_dir = exp_dir / "lattices"
    train_cuts = manifest_path(fbank_dir, corpus, "cuts", "train")
    dev_cuts = manifest_path(fbank_dir, corpus, "cuts", dev_split)
    inputs = averaged_checkpoints(exp_dir, epoch, avg) + \
        [train_cuts, dev_cuts, lang_dir / "tokens.txt", lang_dir / "HLG.pt", lattice_dir / "stats.json"]
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (checkpoints: stage 3, HLG.pt: stage 4, lattices: stage 5)")
    if config.regenerate_lattices:  # the graph that the new lattices are decoded with, stage 5's
        graph = stage5_graph(json.loads((lattice_dir / "stats.json").read_text())["meta"], lang_dir)
        inputs += [graph] if graph is not None else []
    options = {"epoch": epoch, "avg": avg, "finetune": config.read_options(), "lattice": asdict(lattice_config)}
    if config.optimizer == "hf":
        options["hf"] = asdict(hf_config)
    # Stage 6's marker: the Q-values it records are read from the lattice directory, so values
    # redone (or being redone) by stage 6 redo (or stop) this step.
    marker = StageMarker(out_dir, "finetune", options, inputs + [lattice_dir / f".qlearn-{config.reward}.done.json"],
                         outputs=[out_dir / "best.pt"])
    ctx = distributed.context()
    if distributed.main_decides(lambda: marker.skip_if_complete(force)):
        return out_dir
    if ctx.is_main and force and (out_dir / "state.pt").exists():
        (out_dir / "state.pt").unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    torch.manual_seed(config.seed)
    device = ctx.device(device_name)
    tokenizer = Tokenizer(lang_dir)
    model = average_checkpoints(exp_dir, epoch, avg)
    tokenizer.check_model_outputs(model.config.vocab_size)
    data = load_split_lattices(lattice_dir, "train", config.reward, train_cuts, model_digest(model),
                               file_digest(lang_dir / "tokens.txt"), config.max_utts or None)
    model = model.to(device).eval()
    params = trainable_parameters(model, config.trainable)
    logging.info("fine-tuning %s with %s: %d of %d parameters trainable (%s)", config.objective, config.optimizer,
                 sum(p.numel() for p in params), sum(p.numel() for p in model.parameters()), config.trainable)
    objective = SequenceObjective(model, params, config, CtcGraphCompiler(tokenizer, device), device)
    evaluator = DevEvaluator(model, tokenizer, lang_dir, dev_cuts, lattice_config, max_duration, device)
    regenerator = (LatticeRegenerator.like_stage5(model, tokenizer, lang_dir, lattice_dir,
                                                  config.reward if config.objective == "rl" else None,
                                                  data.shard.cut_ids, device)
                   if config.regenerate_lattices else None)
    progress = Finetuner(model, data, config, objective, evaluator, out_dir, hf_config, regenerator).run()
    if regenerator is not None:
        logging.info("%s: %.0f s of the optimization decoded new lattices; %d utterances dropped (empty lattice)",
                     config.name, regenerator.seconds, regenerator.num_dropped)
    logging.info("%s: best dev WER %.2f%% at iteration %d (start %.2f%%), %.0f s of optimization",
                 config.name, progress.best_wer, progress.best_iteration, progress.history[0]["dev_wer"],
                 progress.seconds)
    if ctx.is_main:
        marker.write()
    return out_dir


def report(lang_dir: Path, fbank_dir: Path, exp_dir: Path, out_dir: Path, corpus: str, epoch: int, avg: int,
           splits: Sequence[str], lattice_config: LatticeConfig, max_duration: float = 200.0,
           device_name: str = "auto", force: bool = False) -> str:
    """Decode ``splits`` with ``out_dir/best.pt`` exactly as stage 4 decodes the baseline, and
    tabulate both (``out_dir/comparison.md``, ``.png``); returns the table."""
    decode(lang_dir, fbank_dir, out_dir, corpus, splits, epoch, avg, METHODS, lattice_config, max_duration,
           device_name, force, checkpoint=out_dir / "best.pt")
    return compare(exp_dir / f"results-epoch-{epoch}-avg-{avg}.json", [out_dir], out_dir / "comparison", splits)
