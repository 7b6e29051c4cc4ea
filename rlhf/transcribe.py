"""Transcription of audio files with a bundled model directory: audio reading and resampling, the
training features, one decoding method.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import k2
import numpy as np
import soundfile as sf
import torch
from lhotse import Fbank, FbankConfig

from rlhf.checkpoint import average_checkpoints, load_model
from rlhf.corpus.acoustics import resample
from rlhf.ctc import greedy_search
from rlhf.decode import Decoder, LatticeConfig, get_lattice, get_texts, lattice_num_arcs
from rlhf.bundle import FeatureConfig
from rlhf.graphs import load_graph, read_symbols
from rlhf.lang.compile_hlg import HLG_NAME
from rlhf.lang.tokenizer import Tokenizer
from rlhf.model import CtcModel
from rlhf.stage import atomic_output

# Fewest fbank frames the model's 4x subsampling turns into at least one output frame.
MIN_FRAMES = 7


class AudioError(ValueError):
    """An audio file that cannot be transcribed (unreadable, empty, too short)."""


@dataclass
class Transcript:
    words: list[str]
    lattice: Optional[k2.Fsa] = None  # one FSA, for the lattice methods


def latest_epoch(model_dir: Path) -> int:
    """The highest N of the model directory's ``epoch-N.pt``."""
    epochs = [int(p.stem.split("-")[1]) for p in model_dir.glob("epoch-*.pt") if p.stem.split("-")[1].isdigit()]
    if not epochs:
        raise FileNotFoundError(f"{model_dir} has no epoch-N.pt checkpoint; give --checkpoint or another --model-dir")
    return max(epochs)


def load_model_for_decoding(model_dir: Path, checkpoint: Optional[Path], epoch: Optional[int], avg: int) -> CtcModel:
    """``--checkpoint`` when given, else ``epoch-N.pt`` averaged with the ``avg``-1 epochs before it."""
    if checkpoint is not None:
        logging.info("Model: %s", checkpoint)
        return load_model(checkpoint)
    epoch = epoch if epoch is not None else latest_epoch(model_dir)
    logging.info("Model: %s, epoch %d averaged over %d epoch(s)", model_dir, epoch, avg)
    return average_checkpoints(model_dir, epoch, avg)


def read_audio(path: Path, sampling_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sampling_rate``; AudioError naming the file when that is impossible."""
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file: give the files in it (e.g. {path}/*.wav)")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({e})") from e
    if samples.size == 0:
        raise AudioError(f"{path}: no audio samples")
    mono = samples.mean(axis=1)
    if rate != sampling_rate:
        logging.info("%s: resampling from %d Hz to the model's %d Hz", path, rate, sampling_rate)
        mono = resample(mono, rate, sampling_rate)
    return mono


class Transcriber:
    """A model directory ready to decode: model, lang files, feature extractor, decoder."""

    def __init__(self, model: CtcModel, lang_dir: Path, features: FeatureConfig, method: str,
                 lattice_config: LatticeConfig, device: torch.device):
        if features.type != Fbank.name:
            raise ValueError(f"the model was trained on {features.type!r} features; this command computes "
                             f"{Fbank.name!r} only")
        tokenizer = Tokenizer(lang_dir)
        tokenizer.check_model_outputs(model.config.vocab_size)
        if model.config.num_features != features.num_mel_bins:
            raise ValueError(f"the model takes {model.config.num_features} features but features.json says "
                             f"{features.num_mel_bins} bins: the model directory is inconsistent")
        hlg = word_table = None
        if method == "hlg-1best":
            if not (lang_dir / HLG_NAME).is_file():
                raise FileNotFoundError(f"{lang_dir / HLG_NAME} not found: hlg-1best needs it. Compile it "
                                        f"(steps/compile_hlg.sh) and copy it with steps/bundle_model.sh, "
                                        f"or choose --method ctc-1best")
            hlg, word_table = load_graph(lang_dir / HLG_NAME, device), read_symbols(lang_dir / "words.txt")
        self.features = features
        self.fbank = Fbank(FbankConfig(num_mel_bins=features.num_mel_bins, sampling_rate=features.sampling_rate,
                                       frame_shift=features.frame_shift))
        self.method = method
        self.decoder = Decoder(model, tokenizer, [method], lattice_config, device, hlg, word_table)

    @torch.no_grad()
    def transcribe(self, path: Path) -> Transcript:
        samples = read_audio(path, self.features.sampling_rate)
        feats = torch.from_numpy(self.fbank.extract(samples, self.features.sampling_rate))
        if feats.size(0) < MIN_FRAMES:
            raise AudioError(f"{path}: {len(samples) / self.features.sampling_rate:.3f} s of audio is too short "
                             f"to transcribe (at least {MIN_FRAMES} frames, about 70 ms)")
        device = self.decoder.device
        log_probs, lengths = self.decoder.model(feats.unsqueeze(0).to(device),
                                                torch.tensor([feats.size(0)], device=device))
        if self.method == "ctc-greedy":
            return Transcript(self.decoder.words(self.method, greedy_search(log_probs, lengths)[0]))
        lattice, _ = get_lattice(self.decoder.graphs[self.method], log_probs, lengths, self.decoder.config)
        if lattice_num_arcs(lattice)[0] == 0:
            logging.warning("%s: empty lattice (beams too narrow?); empty transcript", path)
            return Transcript([], lattice[0])
        best = get_texts(k2.shortest_path(lattice, use_double_scores=True))[0]
        return Transcript(self.decoder.words(self.method, best), lattice[0])


def lattice_names(paths: Sequence[Path]) -> list[str]:
    """A distinct lattice name per audio file, valid as a Kaldi scp key (no whitespace): its stem
    with each run of whitespace replaced by ``_``, numbered when names repeat."""
    names, seen = [], set()
    for p in paths:
        stem = "_".join(p.stem.split()) or "audio"
        name, k = stem, 1
        while name in seen:
            k += 1
            name = f"{stem}-{k}"
        seen.add(name)
        names.append(name)
    return names


def transcribe_files(transcriber: Transcriber, paths: Sequence[Path], lattice_dir: Optional[Path] = None) -> int:
    """Print ``<file> <transcript>`` per readable file (and write its lattice); returns the number that failed."""
    failed = []
    names = lattice_names(paths)
    index: list[str] = []
    for path, name in zip(paths, names):
        try:
            result = transcriber.transcribe(path)
        except AudioError as e:
            logging.error("%s", e)
            failed.append(path)
            continue
        print(f"{path} {' '.join(result.words)}".rstrip(), flush=True)
        if lattice_dir is not None:
            with atomic_output(lattice_dir / f"{name}.pt") as tmp:
                torch.save(result.lattice.to("cpu").as_dict(), tmp)
            index.append(f"{name} {path}\n")
    if lattice_dir is not None:
        with atomic_output(lattice_dir / "lattices.scp") as tmp:
            tmp.write_text("".join(index))
    if failed:
        logging.error("%d of %d file(s) could not be transcribed: %s", len(failed), len(paths),
                      " ".join(map(str, failed)))
    return len(failed)


def pick_method(method: str, lang_dir: Path) -> str:
    """``auto``: hlg-1best when the model directory has HLG.pt, else ctc-1best."""
    if method != "auto":
        return method
    chosen = "hlg-1best" if (lang_dir / HLG_NAME).is_file() else "ctc-1best"
    logging.info("--method auto: %s", chosen)
    return chosen
