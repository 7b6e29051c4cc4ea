"""Batches of fbank cuts from lhotse, as icefall's asr_datamodule makes them."""

import inspect
from pathlib import Path

import torch
from lhotse import CutSet, load_manifest_lazy
from lhotse.dataset import DynamicBucketingSampler, K2SpeechRecognitionDataset, SimpleCutSampler, SpecAugment
from torch.utils.data import DataLoader, Sampler


def _allow_sampler_without_data_source() -> None:
    """lhotse 1.33's samplers call ``Sampler.__init__()`` with no argument, which torch 1.13
    rejects (it requires ``data_source``, which it ignores). Make the argument optional."""
    param = inspect.signature(Sampler.__init__).parameters.get("data_source")
    if param is None or param.default is not inspect.Parameter.empty:
        return
    original = Sampler.__init__

    def __init__(self, data_source=None) -> None:
        original(self, data_source)

    Sampler.__init__ = __init__


_allow_sampler_without_data_source()


def load_cuts(path: Path) -> CutSet:
    """A cut manifest with features, with a message saying which stage makes it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found: compute features first (stage 2, steps/compute_fbank.sh)")
    cuts = load_manifest_lazy(path)
    first = next(iter(cuts), None)
    if first is None:
        raise ValueError(f"{path}: no cuts")
    if not first.has_features:
        raise ValueError(f"{path}: cuts have no features; use the cuts written by steps/compute_fbank.sh")
    return cuts


def is_speed_perturbed(cut) -> bool:
    """Whether a cut is a speed-perturbed copy (stage 2's ``--speed-perturb``), by its recording's transforms."""
    recording = getattr(cut, "recording", None)
    transforms = getattr(recording, "transforms", None) or []
    # lhotse keeps a transform as an object (``lhotse.augmentation.Speed``) or, unparsed, as its dict.
    return any((t.get("name") if isinstance(t, dict) else type(t).__name__) == "Speed" for t in transforms)


def is_original(cut) -> bool:
    return not is_speed_perturbed(cut)


def original_cuts(cuts: CutSet) -> CutSet:
    """The cuts without their speed-perturbed copies (lattices are made for the original audio only)."""
    return cuts.filter(is_original)  # a module-level function: lhotse's lazy filter must pickle it


def make_dataloader(cuts: CutSet, max_duration: float, shuffle: bool, seed: int = 0, num_buckets: int = 10,
                    num_workers: int = 0, spec_augment: bool = False, num_features: int = 80,
                    time_warp_factor: int = 80, num_feature_masks: int = 2, world_size: int = 1,
                    rank: int = 0) -> DataLoader:
    """Batches of at most ``max_duration`` seconds of audio.

    Training shuffles within duration buckets (less padding); decoding keeps manifest order.
    The order is a function of ``seed`` and the epoch set with ``loader.sampler.set_epoch``.
    ``spec_augment`` masks time and frequency bands (icefall's settings, the frequency mask
    scaled to ``num_features``; ``num_feature_masks`` of them) and warps time by up to
    ``time_warp_factor`` frames (0: no warp);
    its draws come from the ``random``, numpy and torch generators.
    With ``world_size`` > 1 the batches are dealt out to the ranks (``rank`` gets every
    world_size-th one; lhotse gives every rank the same number). The world size is always
    explicit: lhotse would otherwise read it from torchrun's environment and shard a loader
    that one rank must see whole.
    """
    if not max_duration > 0:
        raise ValueError(f"--max-duration must be above 0 seconds, got {max_duration}")
    if shuffle:
        sampler = DynamicBucketingSampler(cuts, max_duration=max_duration, shuffle=True, num_buckets=num_buckets,
                                          seed=seed, drop_last=False, world_size=world_size, rank=rank)
    else:
        sampler = SimpleCutSampler(cuts, max_duration=max_duration, shuffle=False, world_size=world_size, rank=rank)
    transforms = [SpecAugment(time_warp_factor=time_warp_factor, num_feature_masks=num_feature_masks,
                              features_mask_size=max(1, round(27 * num_features / 80)), num_frame_masks=10,
                              frames_mask_size=100)] if spec_augment else []
    dataset = K2SpeechRecognitionDataset(return_cuts=True, input_transforms=transforms)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                      persistent_workers=False)


def count_batches(loader: DataLoader) -> int:
    """The batches ``loader`` gives (this rank's) in the epoch its sampler is set to: the sampler is run
    over the cut manifest once, reading no features. lhotse's samplers restart from their seed and
    epoch on every iteration, so the batches that follow are the same."""
    return sum(1 for _ in loader.sampler)


def batch_inputs(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Features (N, T, F), frame counts (N,), texts and cut ids, in the batch's order.

    Each cut carries one supervision spanning it, so supervision i belongs to utterance i.
    """
    sup = batch["supervisions"]
    features = batch["inputs"].to(device)
    num_frames = torch.zeros(features.size(0), dtype=torch.int64)
    texts, cut_ids = [""] * features.size(0), [""] * features.size(0)
    for seq, frames, text, cut in zip(sup["sequence_idx"].tolist(), sup["num_frames"].tolist(), sup["text"],
                                      sup["cut"]):
        num_frames[seq] = frames
        texts[seq] = " ".join(text.split())
        cut_ids[seq] = cut.id
    return features, num_frames.to(device), texts, cut_ids
