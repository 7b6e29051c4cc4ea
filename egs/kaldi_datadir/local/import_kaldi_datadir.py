#!/usr/bin/env python3
"""Lhotse manifests from existing Kaldi data directories, one per split, with lhotse's Kaldi import.

Each directory needs ``wav.scp``, ``text`` and ``utt2spk``; ``segments`` is optional (without
it each recording is one utterance, as in Kaldi). ``wav.scp`` entries may be files or
commands ending in ``|``. Writes ``<manifest-dir>/<corpus>_{recordings,supervisions}_<split>.jsonl.gz``
for the splits given (``--train-dir`` is required; ``--dev-dir`` and ``--test-dir`` as you have them).

Everything is checked before anything is written: the files exist, every utterance has a
transcript and a speaker, every audio file in wav.scp exists and has the ``--sampling-rate``.
Utterances with an empty transcript are dropped with a warning (Kaldi allows them; CTC
training cannot use them).
"""

import argparse
import logging
from pathlib import Path

import soundfile as sf
from lhotse import RecordingSet, SupervisionSet
from lhotse.kaldi import load_kaldi_data_dir

from rlhf.cli import add_stage_options, run_step
from rlhf.log import setup_logging
from rlhf.manifests import write_split_manifests
from rlhf.stage import StageMarker

REQUIRED = ("wav.scp", "text", "utt2spk")
OPTIONAL = ("segments", "reco2dur", "spk2gender")


def read_table(path: Path) -> dict[str, str]:
    """A Kaldi ``<key> <value>`` file; the value may be empty (an empty transcript)."""
    table = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if key in table:
            raise ValueError(f"{path}:{n}: {key} appears twice")
        table[key] = value.strip()
    return table


def check_data_dir(data_dir: Path, sampling_rate: int) -> None:
    """Fail early, naming the file, on what lhotse's import would turn into a crash or a silent drop."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} is not a directory")
    for name in REQUIRED:
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"{data_dir / name} not found: a Kaldi data directory needs "
                                    f"{', '.join(REQUIRED)} (and optionally segments)")
    wav_scp, text, utt2spk = (read_table(data_dir / name) for name in REQUIRED)
    if (data_dir / "segments").is_file():
        segments = read_table(data_dir / "segments")
        utts = set(segments)
        unknown = sorted({v.split()[0] for v in segments.values()} - set(wav_scp))
        if unknown:
            raise ValueError(f"{data_dir / 'segments'} names recordings that are not in wav.scp: "
                             f"{', '.join(unknown[:5])}")
    else:
        utts = set(wav_scp)
    for name, table in (("text", text), ("utt2spk", utt2spk)):
        missing = sorted(utts - set(table))
        if missing:
            raise ValueError(f"{data_dir / name} has no entry for {len(missing)} utterance(s), e.g. "
                             f"{', '.join(missing[:5])}")
    for reco, source in wav_scp.items():
        if source.endswith("|"):
            continue  # a command: lhotse runs it when the audio is read
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{data_dir / 'wav.scp'}: {reco}: audio file {path} not found")
        try:
            rate = sf.info(str(path)).samplerate
        except (sf.LibsndfileError, RuntimeError) as e:
            raise ValueError(f"{data_dir / 'wav.scp'}: {reco}: cannot read {path} ({e})") from e
        if rate != sampling_rate:
            raise ValueError(f"{data_dir / 'wav.scp'}: {reco}: {path} is {rate} Hz, not --sampling-rate "
                             f"{sampling_rate}; set --sampling-rate {rate} (every split must have one rate)")


def import_split(data_dir: Path, sampling_rate: int, num_jobs: int) -> tuple[RecordingSet, SupervisionSet]:
    """Recordings and supervisions of one Kaldi data directory, utterances with empty transcripts dropped."""
    recordings, supervisions, _ = load_kaldi_data_dir(data_dir, sampling_rate, num_jobs=num_jobs)
    if supervisions is None:  # cannot happen after check_data_dir (utt2spk exists), but say so if it does
        raise ValueError(f"{data_dir}: lhotse found no utterances (segments or utt2spk)")
    empty = [s.id for s in supervisions if not (s.text or "").strip()]
    if empty:
        logging.warning("%s: dropping %d utterance(s) with an empty transcript, e.g. %s", data_dir / "text",
                        len(empty), ", ".join(empty[:5]))
        supervisions = supervisions.filter(lambda s: bool((s.text or "").strip()))
    if not len(supervisions):
        raise ValueError(f"{data_dir}: no utterance left to import")
    return recordings, supervisions


def import_data_dirs(dirs: dict[str, Path], manifest_dir: Path, corpus: str, sampling_rate: int, num_jobs: int,
                     force: bool) -> None:
    for data_dir in dirs.values():
        check_data_dir(data_dir, sampling_rate)
    inputs = [d / name for d in dirs.values() for name in REQUIRED + OPTIONAL if (d / name).is_file()]
    marker = StageMarker(manifest_dir, f"import_kaldi_datadir_{corpus}",
                         {"dirs": {k: str(v.resolve()) for k, v in dirs.items()}, "sampling_rate": sampling_rate},
                         inputs)
    if marker.skip_if_complete(force):
        return
    for split, data_dir in dirs.items():
        recordings, supervisions = import_split(data_dir, sampling_rate, num_jobs)
        write_split_manifests(manifest_dir, corpus, split, recordings, supervisions)
        logging.info("%s (%s): %d recordings, %d utterances, %.2f hours, %d speakers", split, data_dir,
                     len(recordings), len(supervisions), sum(s.duration for s in supervisions) / 3600,
                     len({s.speaker for s in supervisions}))
    marker.write()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest_dir", type=Path, help="e.g. data/manifests")
    p.add_argument("--train-dir", type=Path, required=True, help="Kaldi data directory of the training set")
    p.add_argument("--dev-dir", type=Path, default=None, help="... of the dev set (optional)")
    p.add_argument("--test-dir", type=Path, default=None, help="... of the test set (optional)")
    p.add_argument("--corpus", default="kaldi", help="manifest name prefix")
    p.add_argument("--sampling-rate", type=int, default=16000, help="the audio's sampling rate (checked)")
    p.add_argument("--nj", type=int, default=1, help="parallel jobs reading durations (when there is no reco2dur)")
    add_stage_options(p)
    args = p.parse_args()
    setup_logging(args.log_dir, "import_kaldi_datadir")
    dirs = {split: d for split, d in (("train", args.train_dir), ("dev", args.dev_dir), ("test", args.test_dir))
            if d is not None}
    run_step(lambda: import_data_dirs(dirs, args.manifest_dir, args.corpus, args.sampling_rate, args.nj,
                                      args.force))


if __name__ == "__main__":
    main()
