#!/usr/bin/env python3
"""Lhotse manifests of CMU AN4 (census database, close-talking microphone), checked file by file.

Reads an AN4 tree (``--corpus-dir``, the directory holding ``etc/`` and ``wav/``, or its parent
holding ``an4/``)::

    etc/an4_{train,test}.fileids          an4_clstk/<speaker>/<utt>   (one per line)
    etc/an4_{train,test}.transcription    TEXT (utt)   (training lines wrapped in <s> ... </s>)
    wav/<fileid>.wav                      16 kHz, 16-bit mono; or .sph (CMU's NIST SPHERE copy)

and writes ``<manifest-dir>/an4_{recordings,supervisions}_{train,dev,test}.jsonl.gz``:

    train   AN4's training set without the dev speakers
    dev     every 9th training speaker in sorted order, starting with the 5th (8 of 74 speakers,
            100 utterances): speaker-disjoint from train, the same for everyone
    test    AN4's test set (10 other speakers), for reporting only

Any inconsistency stops the step with the file and line named, before anything is written: a
fileid without audio, audio without a fileid, a transcript line for an utterance the fileids do
not list (or a fileid without one), an empty transcript, an unreadable audio file. WAV audio is
used where it lies; SPHERE audio is converted once to WAV under ``--wav-dir``, with AN4's
LICENSE beside it (lhotse would need the sph2pipe binary, which it downloads).
"""

import argparse
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

from rlhf.cli import add_stage_options, run_step
from rlhf.log import setup_logging
from rlhf.manifests import write_split_manifests
from rlhf.stage import StageMarker, atomic_output, invalidated_on_error

CORPUS = "an4"
AN4_SETS = {"train": "an4_train", "test": "an4_test"}
DEV_EVERY, DEV_FIRST = 9, 4  # dev speakers: sorted training speakers at positions 4, 13, 22, ...
LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<utt>[^()\s]+)\)\s*$")


@dataclass(frozen=True)
class Utterance:
    utt: str
    speaker: str
    text: str
    audio: Path


def find_root(corpus_dir: Path) -> Path:
    """The directory holding ``etc/`` and ``wav/``: ``--corpus-dir`` itself or its ``an4/``."""
    for root in (corpus_dir, corpus_dir / "an4"):
        if (root / "etc").is_dir() and (root / "wav").is_dir():
            return root
    raise FileNotFoundError(f"--corpus-dir {corpus_dir}: no AN4 tree there (expected etc/an4_train.transcription "
                            f"and wav/an4_clstk/<speaker>/<utt>.wav, or the same under an4/)")


def read_fileids(path: Path) -> dict[str, str]:
    """utt -> fileid (``an4_clstk/fash/an251-fash-b``)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is the AN4 copy complete?")
    fileids = {}
    for line in path.read_text().splitlines():
        if line.strip():
            fileid = line.strip()
            fileids[Path(fileid).name] = fileid
    return fileids


def read_transcription(path: Path) -> dict[str, str]:
    """utt -> words, without the ``<s>``/``</s>`` of the training lines."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is the AN4 copy complete?")
    texts = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = LINE.match(line.strip())
        if m is None:
            raise ValueError(f"{path}:{n}: expected 'WORDS (utterance-id)', got {line!r}")
        words = [w for w in m["text"].split() if w not in ("<s>", "</s>")]
        if not words:
            raise ValueError(f"{path}:{n}: utterance {m['utt']} has an empty transcript; remove the line and "
                             f"its fileid, or restore the transcript")
        if m["utt"] in texts:
            raise ValueError(f"{path}:{n}: utterance {m['utt']} is transcribed twice")
        texts[m["utt"]] = " ".join(words)
    return texts


def audio_path(root: Path, fileid: str) -> Path:
    for ext in (".wav", ".sph"):
        if (root / "wav" / (fileid + ext)).is_file():
            return root / "wav" / (fileid + ext)
    raise FileNotFoundError(f"{root / 'wav' / fileid}.wav (or .sph) not found: listed in the fileids, no audio")


def read_set(root: Path, name: str) -> list[Utterance]:
    """One AN4 set (``an4_train`` or ``an4_test``), every fileid with its transcript and audio."""
    fileids_path, text_path = root / "etc" / f"{name}.fileids", root / "etc" / f"{name}.transcription"
    fileids, texts = read_fileids(fileids_path), read_transcription(text_path)
    for utt in texts:
        if utt not in fileids:
            raise ValueError(f"{text_path}: utterance {utt} is not in {fileids_path} (no audio for this line)")
    for utt in fileids:
        if utt not in texts:
            raise ValueError(f"{fileids_path}: utterance {utt} has no line in {text_path}")
    utterances = [Utterance(utt, Path(fileid).parent.name, texts[utt], audio_path(root, fileid))
                  for utt, fileid in fileids.items()]
    # Audio without a transcript: a file in the set's directories that the fileids do not name.
    listed = {u.audio.with_suffix("") for u in utterances}
    for directory in sorted({u.audio.parent.parent for u in utterances}):
        for path in sorted(directory.rglob("*")):
            if path.suffix in (".wav", ".sph") and path.with_suffix("") not in listed:
                raise ValueError(f"{path}: audio without a transcript (not in {fileids_path})")
    return utterances


def dev_speakers(train: list[Utterance]) -> list[str]:
    speakers = sorted({u.speaker for u in train})
    if len(speakers) <= DEV_FIRST:
        raise ValueError(f"the training set has {len(speakers)} speakers; the dev rule (every {DEV_EVERY}th from "
                         f"the {DEV_FIRST + 1}th) needs at least {DEV_FIRST + 2}, so that train keeps some")
    return speakers[DEV_FIRST::DEV_EVERY]


def readable_wav(utt: Utterance, wav_dir: Path) -> Path:
    """The utterance's audio as WAV: the file itself, or its SPHERE audio converted under ``wav_dir``."""
    try:
        info = sf.info(str(utt.audio))
    except Exception as e:  # soundfile raises its own error types; any of them means the same
        raise ValueError(f"{utt.audio}: cannot read the audio ({e})") from None
    if info.frames == 0:
        raise ValueError(f"{utt.audio}: no samples")
    if utt.audio.suffix == ".wav":
        return utt.audio
    out = wav_dir / utt.audio.parent.name / (utt.audio.stem + ".wav")
    if not out.is_file():
        samples, rate = sf.read(str(utt.audio), dtype="int16")
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(out) as tmp:
            sf.write(str(tmp), samples, rate, format="WAV", subtype="PCM_16")
    return out


def manifests(utterances: list[Utterance], wav_dir: Path) -> tuple[RecordingSet, SupervisionSet]:
    recordings, supervisions = [], []
    for u in utterances:
        rec = Recording.from_file(readable_wav(u, wav_dir).resolve(), recording_id=u.utt)  # valid from anywhere
        recordings.append(rec)
        supervisions.append(SupervisionSegment(id=u.utt, recording_id=u.utt, start=0.0, duration=rec.duration,
                                               channel=0, text=u.text, language="English", speaker=u.speaker))
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def prepare(corpus_dir: Path, manifest_dir: Path, wav_dir: Path, force: bool) -> None:
    with invalidated_on_error(manifest_dir, "prepare_an4"):  # stage 1 then refuses an earlier run's manifests
        _prepare(corpus_dir, manifest_dir, wav_dir, force)


def _prepare(corpus_dir: Path, manifest_dir: Path, wav_dir: Path, force: bool) -> None:
    root = find_root(corpus_dir)
    sets = {split: read_set(root, name) for split, name in AN4_SETS.items()}  # every check before any write
    lists = [root / "etc" / f"{name}.{kind}" for name in AN4_SETS.values() for kind in ("fileids", "transcription")]
    marker = StageMarker(manifest_dir, "prepare_an4", {"corpus_dir": root.resolve()},
                         lists + [u.audio for s in sets.values() for u in s])  # a replaced audio file redoes it
    if marker.skip_if_complete(force):
        return
    dev = set(dev_speakers(sets["train"]))
    splits = {"train": [u for u in sets["train"] if u.speaker not in dev],
              "dev": [u for u in sets["train"] if u.speaker in dev],
              "test": sets["test"]}
    if any(u.audio.suffix == ".sph" for s in sets.values() for u in s):
        wav_dir.mkdir(parents=True, exist_ok=True)
        if (root / "LICENSE").is_file():
            shutil.copy(root / "LICENSE", wav_dir / "LICENSE")  # AN4's licence travels with any copy
    built = {split: manifests(utts, wav_dir) for split, utts in splits.items()}
    for split, (recordings, supervisions) in built.items():
        write_split_manifests(manifest_dir, CORPUS, split, recordings, supervisions)
        logging.info("%s: %d utterances, %d speakers, %.1f minutes", split, len(recordings),
                     len({u.speaker for u in splits[split]}), sum(r.duration for r in recordings) / 60)
    logging.info("dev speakers (every %dth training speaker from the %dth): %s", DEV_EVERY, DEV_FIRST + 1,
                 " ".join(sorted(dev)))
    marker.write()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest_dir", type=Path, help="where the manifests go, e.g. data/manifests")
    p.add_argument("--corpus-dir", type=Path, required=True,
                   help="the AN4 tree (holding etc/ and wav/, or an4/ with them), WAV or SPHERE")
    p.add_argument("--wav-dir", type=Path, default=Path("download/an4_wav"),
                   help="where SPHERE audio is converted to WAV (unused for a WAV copy)")
    add_stage_options(p)
    args = p.parse_args()
    setup_logging(args.log_dir, "prepare_an4")
    run_step(lambda: prepare(args.corpus_dir, args.manifest_dir, args.wav_dir, args.force))


if __name__ == "__main__":
    main()
