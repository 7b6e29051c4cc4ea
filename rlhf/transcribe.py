"""Transcription of audio files with a bundled model directory: audio reading and resampling, the
training features, one decoding method; long files in chunks, so memory does not grow with them.
"""

import json
import logging
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Iterator, Optional, Sequence

import k2
import numpy as np
import soundfile as sf
import torch
from lhotse import Fbank, FbankConfig

from rlhf.checkpoint import SELECTED, average_checkpoints, load_model
from rlhf.corpus.acoustics import resample
from rlhf.ctc import greedy_search
from rlhf.decode import Decoder, LatticeConfig, get_lattice, get_texts, lattice_num_arcs
from rlhf.bundle import FeatureConfig
from rlhf.graphs import fsa_to_dict, load_graph, read_symbols
from rlhf.lang.compile_hlg import HLG_NAME
from rlhf.lang.tokenizer import Tokenizer
from rlhf.model import MIN_INPUT_FRAMES, CtcModel
from rlhf.stage import atomic_output, save_torch

# Fewest fbank frames the model's 4x subsampling turns into at least one output frame.
MIN_FRAMES = MIN_INPUT_FRAMES

# Long files are decoded in chunks of at most CHUNK_SECONDS (+ CHUNK_TAIL_SECONDS for the last),
# each cut at the quietest 10 ms of its last CUT_WINDOW_SECONDS: the lattice search, whose memory
# grows with the frames it searches at once (about 1 GB per minute of audio with the default beams),
# then never holds more than one chunk. Measured: RESULTS.md, "rlhf-transcribe on long audio".
CHUNK_SECONDS = 30.0
CHUNK_TAIL_SECONDS = 1.0
CUT_WINDOW_SECONDS = 5.0
RESAMPLE_MARGIN_SECONDS = 0.1  # audio read beyond a chunk's ends so that resampling has no edge effects


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


def load_model_for_decoding(model_dir: Path, checkpoint: Optional[Path], epoch: Optional[int],
                            avg: Optional[int]) -> CtcModel:
    """``--checkpoint`` when given, else ``epoch-N.pt`` averaged with the ``avg``-1 epochs before it.

    Without ``epoch``: the epoch stage 3 selected (``selected.json``, with the ``avg`` it judged),
    else the last one (with ``avg`` 1).
    """
    if checkpoint is not None:
        logging.info("Model: %s", checkpoint)
        return load_model(checkpoint)
    selected = model_dir / SELECTED
    if epoch is None and selected.is_file():
        chosen = json.loads(selected.read_text())
        epoch, avg = chosen["epoch"], avg or chosen["avg"]
    epoch = epoch if epoch is not None else latest_epoch(model_dir)
    avg = avg or 1
    logging.info("Model: %s, epoch %d averaged over %d epoch(s)", model_dir, epoch, avg)
    return average_checkpoints(model_dir, epoch, avg)


def _open_audio(path: Path) -> sf.SoundFile:
    """The file opened for reading; AudioError naming it when that is impossible."""
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file: give the files in it (e.g. {path}/*.wav)")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        audio = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({e})") from e
    if audio.frames <= 0:
        audio.close()
        raise AudioError(f"{path}: no audio samples")
    return audio


def _read_mono(audio: sf.SoundFile, path: Path, start: int, end: int) -> np.ndarray:
    audio.seek(start)
    try:
        samples = audio.read(end - start, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({e})") from e
    return samples.mean(axis=1)


def _quietest_cut(samples: np.ndarray, rate: int) -> int:
    """The start of the 10 ms of least energy in ``samples`` (index into them)."""
    hop = max(1, rate // 100)
    frames = len(samples) // hop
    energy = np.square(samples[:frames * hop].astype(np.float64)).reshape(frames, hop).sum(axis=1)
    return int(np.argmin(energy)) * hop


def chunk_bounds(total: int, rate: int, chunk_seconds: float, quietest=None) -> list[tuple[int, int]]:
    """(start, end) sample ranges that cover ``total`` samples: chunks of at most ``chunk_seconds``,
    the last of at most ``chunk_seconds`` + CHUNK_TAIL_SECONDS; each but the last ends within its
    last CUT_WINDOW_SECONDS (a quarter of the chunk when that is less), ``quietest(lo, hi)`` samples
    after ``lo`` (the quietest point of samples lo .. hi; without it, at the chunk's full length).
    ``chunk_seconds`` 0: one chunk."""
    if chunk_seconds <= 0:
        return [(0, total)]
    size = max(1, int(chunk_seconds * rate))
    tail = int(CHUNK_TAIL_SECONDS * rate)
    window = max(1, min(int(CUT_WINDOW_SECONDS * rate), size // 4))
    bounds, start = [], 0
    while total - start > size + tail:
        lo = start + size - window
        cut = lo + (quietest(lo, start + size) if quietest else window)
        bounds.append((start, cut))
        start = cut
    bounds.append((start, total))
    return bounds


def audio_chunks(path: Path, sampling_rate: int, chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """Mono float32 samples at ``sampling_rate``, a chunk at a time (see chunk_bounds; 0: the whole
    file): only one chunk of the file is ever in memory. AudioError names a file that cannot be read."""
    with _open_audio(path) as audio:
        rate, total = audio.samplerate, audio.frames
        if rate != sampling_rate:
            logging.info("%s: resampling from %d Hz to the model's %d Hz", path, rate, sampling_rate)

        def quietest(lo: int, hi: int) -> int:
            return _quietest_cut(_read_mono(audio, path, lo, hi), rate)

        step = rate // gcd(rate, sampling_rate)  # chunks read from multiples of it resample in phase
        margin = int(RESAMPLE_MARGIN_SECONDS * rate) if rate != sampling_rate else 0
        for start, end in chunk_bounds(total, rate, chunk_seconds, quietest):
            if rate == sampling_rate:
                yield _read_mono(audio, path, start, end)
                continue
            lo, hi = max(0, (start - margin) // step * step), min(total, end + margin)
            out = resample(_read_mono(audio, path, lo, hi), rate, sampling_rate)
            first = round(start * sampling_rate / rate) - round(lo * sampling_rate / rate)
            yield out[first:first + round(end * sampling_rate / rate) - round(start * sampling_rate / rate)]


class Transcriber:
    """A model directory ready to decode: model, lang files, feature extractor, decoder."""

    def __init__(self, model: CtcModel, lang_dir: Path, features: FeatureConfig, method: str,
                 lattice_config: LatticeConfig, device: torch.device, chunk_seconds: float = CHUNK_SECONDS):
        lattice_config.check()
        if chunk_seconds < 0 or 0 < chunk_seconds < 4 * CHUNK_TAIL_SECONDS:
            raise ValueError(f"--chunk-seconds must be 0 (whole files) or at least {4 * CHUNK_TAIL_SECONDS:g}, "
                             f"got {chunk_seconds:g}")
        self.chunk_seconds = chunk_seconds
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
    def transcribe(self, path: Path, with_lattice: bool = True) -> Transcript:
        """The file's words, chunk by chunk (``chunk_seconds``); with ``with_lattice`` (lattice methods)
        also its lattice: the chunks' lattices joined in order (join_lattices)."""
        words: list[str] = []
        parts: list[tuple[k2.Fsa, int, int]] = []
        frame_offset = 0
        for samples in audio_chunks(path, self.features.sampling_rate, self.chunk_seconds):
            chunk_words, lattice, num_frames = self.decode_chunk(path, samples)
            words += chunk_words
            if with_lattice and lattice is not None:
                parts.append((lattice, frame_offset, num_frames))
            frame_offset += num_frames
        return Transcript(words, join_lattices(parts) if parts else None)

    def decode_chunk(self, path: Path, samples: np.ndarray) -> tuple[list[str], Optional[k2.Fsa], int]:
        """Words, lattice (lattice methods; one Fsa) and output frames of a chunk of samples."""
        feats = torch.from_numpy(self.fbank.extract(samples, self.features.sampling_rate))
        if feats.size(0) < MIN_FRAMES:
            raise AudioError(f"{path}: {len(samples) / self.features.sampling_rate:.3f} s of audio is too short "
                             f"to transcribe (at least {MIN_FRAMES} frames, about 70 ms)")
        device = self.decoder.device
        log_probs, lengths = self.decoder.model(feats.unsqueeze(0).to(device),
                                                torch.tensor([feats.size(0)], device=device))
        num_frames = int(lengths[0])
        if self.method == "ctc-greedy":
            return self.decoder.words(self.method, greedy_search(log_probs, lengths)[0]), None, num_frames
        lattice, _ = get_lattice(self.decoder.graphs[self.method], log_probs, lengths, self.decoder.config)
        if lattice_num_arcs(lattice)[0] == 0:
            logging.warning("%s: empty lattice (beams too narrow?) for %.1f s of it; no words there", path,
                            len(samples) / self.features.sampling_rate)
            return [], lattice[0].to("cpu"), num_frames
        best = get_texts(k2.shortest_path(lattice, use_double_scores=True))[0]
        return self.decoder.words(self.method, best), lattice[0].to("cpu"), num_frames


def _epsilon_lattice(like: k2.Fsa, num_frames: int) -> k2.Fsa:
    """A lattice of a single final arc (no words) standing for a chunk whose search found no path."""
    fsa = k2.Fsa(torch.tensor([[0, 1, -1, 0]], dtype=torch.int32))
    fsa.frame_idx = torch.tensor([num_frames], dtype=torch.int32)
    fsa.aux_labels = k2.RaggedTensor([[-1]]) if isinstance(like.aux_labels, k2.RaggedTensor) else \
        torch.tensor([-1], dtype=torch.int32)
    return fsa


def join_lattices(parts: Sequence[tuple[k2.Fsa, int, int]]) -> k2.Fsa:
    """One lattice of consecutive chunks' lattices (single Fsas, each with the output frame its chunk
    starts at and its number of frames): chunk k's final state is chunk k+1's start state, its final
    arcs output nothing there (label 0, epsilon), and ``frame_idx`` counts from the start of the file.
    An empty chunk lattice (no path) stands there as a single arc without words. The best path is the
    chunks' best paths in order. Only labels, scores, aux_labels and frame_idx are kept."""
    if len(parts) == 1:
        return parts[0][0]
    rows, scores, frames, tensor_aux, ragged_aux = [], [], [], [], []
    ragged = isinstance(parts[0][0].aux_labels, k2.RaggedTensor)
    state_offset = 0
    for k, (lattice, frame_offset, num_frames) in enumerate(parts):
        if lattice.num_arcs == 0:
            lattice = _epsilon_lattice(lattice, num_frames)
        arcs = lattice.arcs.values()[:, :3].clone()
        final = arcs[:, 2] == -1
        if k < len(parts) - 1:
            arcs[final, 2] = 0
        num_states = int(arcs[:, 1].max()) + 1
        arcs[:, :2] += state_offset
        rows.append(arcs)
        scores.append(lattice.scores.detach().clone())
        frames.append(lattice.frame_idx + frame_offset)
        if ragged:
            outputs = lattice.aux_labels.tolist()
            ragged_aux += [[] if k < len(parts) - 1 and f else out for out, f in zip(outputs, final.tolist())]
        else:
            aux = lattice.aux_labels.clone()
            if k < len(parts) - 1:
                aux[final] = 0
            tensor_aux.append(aux)
        state_offset += num_states - 1  # the final state is the next chunk's start state
    arcs = torch.cat(rows)
    joined = k2.Fsa(torch.cat([arcs, torch.zeros(len(arcs), 1, dtype=torch.int32)], dim=1))
    joined.scores = torch.cat(scores)
    joined.frame_idx = torch.cat(frames)
    joined.aux_labels = k2.RaggedTensor(ragged_aux) if ragged else torch.cat(tensor_aux)
    return joined


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
            result = transcriber.transcribe(path, with_lattice=lattice_dir is not None)
        except AudioError as e:
            logging.error("%s", e)
            failed.append(path)
            continue
        print(f"{path} {' '.join(result.words)}".rstrip(), flush=True)
        if lattice_dir is not None:
            save_torch(fsa_to_dict(result.lattice.to("cpu")), lattice_dir / f"{name}.pt")
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
