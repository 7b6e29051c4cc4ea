"""Training steps of rlhf.train.Trainer on fixed batches, in one process or as one rank of several.

    python tests/ddp_step.py OUT LANG_DIR [full|half]                       # one process
    python -m rlhf.torchrun --nproc_per_node 2 ... tests/ddp_step.py OUT LANG_DIR   # 2 ranks

Every step has a global batch of 4 utterances of equal length (no padding, so an utterance's
outputs do not depend on the others in its batch). One process takes all 4 (``full``) or only
the first 2 (``half``, rank 0's share: a result that must differ); rank r of 2 takes utterances
2r and 2r+1. The steps exercise a normal update, a rank running out of batches (step 2, right
after the first backward, where DDP rebuilds its buckets), a transcript too long for its audio
on rank 1's share (step 4: every rank must skip it) and updates after those. Then the dev
loss and WER of utterances 0-2 (``Trainer.evaluate``): one process takes them in one batch;
rank 0 takes 0 and 1, rank 1 takes 2 and a copy of 0 marked as lhotse marks the cuts it
duplicates to give every rank a batch (which must not count).
Each rank writes ``OUT/rank-<r>.pt``: the initial and final parameters, the final gradients,
what every step returned and the evaluation.
"""

import sys
from types import SimpleNamespace
from pathlib import Path

import torch

from batches import make_batch
from rlhf import distributed
from rlhf.lang.tokenizer import Tokenizer
from rlhf.model import CtcModel, ModelConfig
from rlhf.train import OutOfBatches, TrainConfig, Trainer

NUM_FRAMES = 100
TEXTS = ["A B C", "C A", "B", "A C B A"]
IMPOSSIBLE = " ".join(["A B C"] * 10)  # 30 words: more than the 24 output frames of 100 input frames


def step_batches() -> list[list[str]]:
    """The texts of each step's global batch; None where rank 1 has run out of batches."""
    return [TEXTS, None, TEXTS[::-1], TEXTS[:3] + [IMPOSSIBLE], ["B C", "A", "C C", "A B"]]


def share(batch: dict, indices: list[int]) -> dict:
    """The utterances ``indices`` of a batch, as a batch of their own."""
    sup = batch["supervisions"]
    return {"inputs": batch["inputs"][indices],
            "supervisions": {"sequence_idx": torch.arange(len(indices), dtype=torch.int32),
                             "start_frame": sup["start_frame"][indices],
                             "num_frames": sup["num_frames"][indices],
                             "text": [sup["text"][i] for i in indices],
                             "cut": [sup["cut"][i] for i in indices]}}


def main(out: Path, lang_dir: Path, part: str = "full") -> None:
    ctx = distributed.init(timeout=60, device_name="cpu")
    tokenizer = Tokenizer(lang_dir)
    torch.manual_seed(0)
    model = CtcModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_dim=32, num_layers=2,
                                 subsampling_channels=8, dropout=0.0))
    # No warm-up and a clipping threshold the gradients stay below: every step moves every weight.
    trainer = Trainer(model, tokenizer, TrainConfig(lr=1e-3, warmup_steps=1, clip_grad_norm=1e6),
                      torch.device("cpu"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    if ctx.enabled:
        mine = [2 * ctx.rank, 2 * ctx.rank + 1]
    else:
        mine = [0, 1, 2, 3] if part == "full" else [0, 1]
    results = []
    for step, texts in enumerate(step_batches()):
        if texts is None:  # rank 1 (or the rank of a single process) has no batch; rank 0 has one
            texts, out_of_batches = TEXTS, ctx.rank == 1 or not ctx.enabled
        else:
            out_of_batches = False
        batch = make_batch([NUM_FRAMES] * 4, texts, seed=step)
        try:
            results.append(trainer.train_step(None if out_of_batches else share(batch, mine)))
        except OutOfBatches as e:
            results.append(f"out of batches, {e.dropped} dropped")
    dev = make_batch([NUM_FRAMES] * 4, ["C B A", "A", "B C", "C"], seed=99)
    if not ctx.enabled:
        dev_share = share(dev, [0, 1, 2])
    elif ctx.rank == 0:
        dev_share = share(dev, [0, 1])
    else:
        dev_share = share(dev, [2, 0])
        dev_share["supervisions"]["cut"][1] = SimpleNamespace(id="utt0_dup0", duration=NUM_FRAMES / 100)
    evaluation = trainer.evaluate([dev_share])
    torch.save({"initial": initial, "final": model.state_dict(),
                "grads": {name: p.grad.clone() for name, p in model.named_parameters()},
                "results": results, "step": trainer.step, "evaluation": evaluation, "world_size": ctx.world_size},
               out / f"rank-{ctx.rank}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:])
