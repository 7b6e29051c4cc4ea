"""Kaldi-compatible fbank features of every split (lhotse ``Fbank``, lilcom archives), with optional
speed perturbation of the training split.
"""

import logging
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import torch
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, load_manifest_lazy
from lhotse.features.base import compute_num_frames
from tqdm import tqdm

from rlhf.manifests import check_disjoint_splits, manifest_path
from rlhf.model import MIN_INPUT_FRAMES
from rlhf.stage import StageMarker, write_manifest


def manifest_paths(manifest_dir: Path, corpus: str, split: str) -> tuple[Path, Path]:
    """The recordings and supervisions manifests of one split."""
    return tuple(manifest_path(manifest_dir, corpus, kind, split) for kind in ("recordings", "supervisions"))


def _extract(job: tuple[CutSet, Path, FbankConfig]) -> CutSet:
    cuts, storage, config = job
    torch.set_num_threads(1)  # parallelism comes from processes; threads would contend for cores
    return cuts.compute_and_store_features(
        extractor=Fbank(config), storage_path=storage,
        storage_type=LilcomChunkyWriter, num_jobs=1, progress_bar=False,
    )


SPEED_FACTORS = (0.9, 1.1)
TRAIN_SPLIT = "train"


def with_speed_perturbation(cuts: CutSet) -> CutSet:
    """The cuts, then their copies at each of ``SPEED_FACTORS`` (durations divided by the factor)."""
    return CutSet.from_cuts([*cuts, *(c for factor in SPEED_FACTORS for c in cuts.perturb_speed(factor))])


def drop_too_short(cuts: CutSet, frame_shift: float, where: str) -> CutSet:
    """The cuts without those too short for the model: fewer fbank frames than
    ``MIN_INPUT_FRAMES`` (65 ms at a 10 ms shift), which its 4x subsampling turns into no output
    frame at all (k2's CTC loss then fails on the whole batch, naming no utterance). Each one is
    named in a warning and counted; a split left with none is an error.
    """
    kept, dropped = [], []
    for cut in cuts:
        frames = compute_num_frames(cut.duration, frame_shift, cut.sampling_rate)
        if frames >= MIN_INPUT_FRAMES:
            kept.append(cut)
            continue
        dropped.append(cut.id)
        source = cut.recording.sources[0].source if cut.has_recording else "?"
        logging.warning("%s: skipping utterance %s (%s): %.3f s of audio gives %d fbank frames; the model needs "
                        "at least %d (%.0f ms)", where, cut.id, source, cut.duration, frames, MIN_INPUT_FRAMES,
                        1000 * (MIN_INPUT_FRAMES - 0.5) * frame_shift)
    if dropped:
        logging.warning("%s: %d of %d utterance(s) skipped as too short for the model (named above)", where,
                        len(dropped), len(dropped) + len(kept))
    if not kept:
        raise ValueError(f"{where}: every utterance is shorter than the model's minimum of {MIN_INPUT_FRAMES} fbank "
                         f"frames; is the audio truncated?")
    return CutSet.from_cuts(kept)


def compute_fbank_split(manifest_dir: Path, fbank_dir: Path, corpus: str, split: str, num_jobs: int,
                        num_mel_bins: int = 80, speed_perturb: bool = False) -> Path:
    """Compute features for one split with ``num_jobs`` processes; returns the cut manifest's path.

    The cuts are cut into many more chunks than jobs so the progress bar moves steadily.
    """
    recordings, supervisions = (load_manifest_lazy(p) for p in manifest_paths(manifest_dir, corpus, split))
    # One cut per utterance: a recording with several (Kaldi segments) gives several cuts.
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions).trim_to_supervisions(
        keep_overlapping=False)
    cuts = CutSet.from_cuts(c.with_id(c.supervisions[0].id) for c in cuts)  # cut id = utterance id
    if speed_perturb:
        cuts = with_speed_perturbation(cuts)
    rates = {c.sampling_rate for c in cuts}
    if len(rates) != 1:
        raise ValueError(f"{split}: recordings have several sampling rates {sorted(rates)}; resample them first")
    config = FbankConfig(num_mel_bins=num_mel_bins, sampling_rate=rates.pop())
    cuts = drop_too_short(cuts, config.frame_shift, f"{corpus} {split}")
    cuts_path = manifest_path(fbank_dir, corpus, "cuts", split)
    storage = (fbank_dir / f"{corpus}_feats_{split}").resolve()
    if storage.exists():
        shutil.rmtree(storage)  # archives of an earlier, unfinished run
    storage.mkdir(parents=True)
    logging.info("Computing fbank for %s: %d cuts, %.2f hours, %d jobs", split, len(cuts),
                 sum(c.duration for c in cuts) / 3600, num_jobs)
    chunks = cuts.split(num_splits=min(len(cuts), 16 * num_jobs))
    jobs = [(chunk, storage / f"feats-{i:03d}", config) for i, chunk in enumerate(chunks)]
    with ProcessPoolExecutor(num_jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        done = list(tqdm(pool.map(_extract, jobs), total=len(jobs), desc=f"fbank {split}"))
    write_manifest(CutSet.from_cuts(c for chunk in done for c in chunk), cuts_path)
    return cuts_path


def compute_fbank(manifest_dir: Path, fbank_dir: Path, corpus: str, splits: Sequence[str], num_jobs: int,
                  num_mel_bins: int = 80, force: bool = False, speed_perturb: bool = False) -> None:
    """Features for every split; with ``speed_perturb`` the ``train`` split gets its 0.9x and 1.1x copies."""
    if num_jobs < 1:
        raise ValueError(f"--nj must be above 0, got {num_jobs}")
    inputs = [p for split in splits for p in manifest_paths(manifest_dir, corpus, split)]
    options = {"corpus": corpus, "splits": list(splits), "num_mel_bins": num_mel_bins}
    if speed_perturb:  # recorded only when on, so markers written before the option existed stay valid
        options["speed_perturb"] = list(SPEED_FACTORS)
    marker = StageMarker(fbank_dir, "compute_fbank", options, inputs)
    if marker.skip_if_complete(force):
        return
    check_disjoint_splits({split: load_manifest_lazy(manifest_paths(manifest_dir, corpus, split)[1]).ids
                           for split in dict.fromkeys(splits)}, f"{manifest_dir}/{corpus}_supervisions_<split>",
                          TRAIN_SPLIT)
    fbank_dir.mkdir(parents=True, exist_ok=True)
    for split in splits:
        compute_fbank_split(manifest_dir, fbank_dir, corpus, split, num_jobs, num_mel_bins,
                            speed_perturb and split == TRAIN_SPLIT)
    marker.write()
