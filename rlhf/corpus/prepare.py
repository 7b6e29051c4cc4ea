"""Lhotse manifests of a corpus directory in the layout rlhf.corpus.synthesize writes, checked first.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import soundfile as sf
from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.qa import validate_recordings_and_supervisions

from rlhf.manifests import SPLITS, manifest_path
from rlhf.stage import StageMarker, atomic_output, write_manifest



class CorpusError(ValueError):
    """The corpus directory has problems; the message lists them with their files."""


@dataclass
class SplitManifests:
    recordings: RecordingSet
    supervisions: SupervisionSet


def read_table(path: Path) -> dict[str, str]:
    """A Kaldi-style ``<key> <value...>`` file as a dict (value may be empty)."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            key, _, value = line.rstrip("\n").partition(" ")
            if key in table:
                raise CorpusError(f"{path}:{line_no}: duplicate key {key!r}")
            table[key] = value.strip()
    return table


def load_split(corpus_dir: Path, split: str, sample_rate: int) -> SplitManifests:
    """Validate one split and build its manifests; raise CorpusError listing every problem."""
    split_dir = corpus_dir / split
    for name in ("text", "wav.scp", "utt2spk"):
        if not (split_dir / name).is_file():
            raise CorpusError(f"missing {split_dir / name}: is {corpus_dir} a corpus made by stage 0?")
    texts, wavs, speakers = (read_table(split_dir / n) for n in ("text", "wav.scp", "utt2spk"))
    problems, recordings, supervisions = [], [], []
    for utt_id, text in texts.items():
        if not text:
            problems.append(f"{split_dir / 'text'}: empty transcript for {utt_id}")
            continue
        if utt_id not in wavs or utt_id not in speakers:
            problems.append(f"{split_dir}: {utt_id} is in text but not in wav.scp/utt2spk")
            continue
        path = (corpus_dir / wavs[utt_id]).resolve()
        if not path.is_file():
            problems.append(f"{path}: audio file missing (listed for {utt_id} in {split_dir / 'wav.scp'})")
            continue
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as e:
            problems.append(f"{path}: unreadable audio ({e})")
            continue
        if info.samplerate != sample_rate:
            problems.append(f"{path}: sample rate {info.samplerate} Hz, expected {sample_rate} Hz")
            continue
        duration = info.frames / info.samplerate
        recordings.append(Recording(
            id=utt_id, sources=[AudioSource(type="file", channels=[0], source=str(path))],
            sampling_rate=info.samplerate, num_samples=info.frames, duration=duration,
        ))
        supervisions.append(SupervisionSegment(
            id=utt_id, recording_id=utt_id, start=0.0, duration=duration, channel=0,
            text=text, speaker=speakers[utt_id], language="English",
        ))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CorpusError(f"{len(problems)} problem(s) in {split_dir}:\n  {shown}{more}")
    manifests = SplitManifests(RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions))
    validate_recordings_and_supervisions(manifests.recordings, manifests.supervisions)
    return manifests


def corpus_summary(manifests: dict[str, SplitManifests]) -> dict:
    """Hours, utterances and speakers per split; vocabulary size; dev/test OOV rates."""
    def words(split: str) -> list[str]:
        return [w for s in manifests[split].supervisions for w in s.text.split()]

    train_vocab = set(words("train"))
    summary: dict = {"vocabulary_size": len(train_vocab), "splits": {}}
    for split, m in manifests.items():
        tokens = words(split)
        summary["splits"][split] = {
            "utterances": len(m.supervisions),
            "hours": round(sum(s.duration for s in m.supervisions) / 3600, 3),
            "speakers": len({s.speaker for s in m.supervisions}),
            "words": len(tokens),
            "oov_rate": round(sum(w not in train_vocab for w in tokens) / max(len(tokens), 1), 4),
        }
    return summary


def prepare_manifests(corpus_dir: Path, output_dir: Path, corpus_name: str, sample_rate: int = 16000,
                      force: bool = False) -> Optional[dict]:
    """Write ``<corpus_name>_{recordings,supervisions}_<split>.jsonl.gz`` and ``summary.json``."""
    tables = [corpus_dir / split / name for split in SPLITS for name in ("text", "wav.scp", "utt2spk")]
    tables.append(corpus_dir / ".synthesize.done.json")  # present when stage 0 made the corpus
    marker = StageMarker(output_dir, "prepare_manifests",
                         {"corpus_name": corpus_name, "sample_rate": sample_rate}, [t for t in tables if t.exists()])
    if marker.skip_if_complete(force):
        return None
    manifests = {split: load_split(corpus_dir, split, sample_rate) for split in SPLITS}
    summary = corpus_summary(manifests)
    output_dir.mkdir(parents=True, exist_ok=True)
    for split, m in manifests.items():
        for kind, manifest in (("recordings", m.recordings), ("supervisions", m.supervisions)):
            write_manifest(manifest, manifest_path(output_dir, corpus_name, kind, split))
    with atomic_output(output_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    log_summary(summary)
    marker.write()
    return summary


def log_summary(summary: dict) -> None:
    logging.info("Corpus summary (vocabulary of the training transcripts: %d words)", summary["vocabulary_size"])
    logging.info("%-6s %8s %7s %9s %8s %8s", "split", "utts", "hours", "speakers", "words", "OOV")
    for split, s in summary["splits"].items():
        logging.info("%-6s %8d %7.3f %9d %8d %7.2f%%", split, s["utterances"], s["hours"], s["speakers"],
                     s["words"], 100 * s["oov_rate"])
