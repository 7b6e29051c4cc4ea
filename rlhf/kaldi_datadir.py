"""Kaldi data directories (``wav.scp``, ``text``, ``utt2spk``, optional ``segments`` and
``reco2dur``) as Lhotse manifests, every file checked before anything is written
(egs/kaldi_datadir, stage 0).

The tables are read as Kaldi reads them: ``<key> <value>`` separated by spaces or tabs, UTF-8.
Every problem is one error naming the file, the line and what to do: a line of the wrong shape,
a key given twice, an utterance of ``text`` or ``utt2spk`` that is neither in ``segments`` nor
(without segments) in ``wav.scp``, an utterance without a transcript line or a speaker, audio
that is missing, unreadable, of another rate than ``--sampling-rate`` or of several channels, a
segment that ends before it starts or past its recording's end (Kaldi's ``extract-segments``
tolerates 0.5 s, :data:`MAX_OVERSHOOT`, and cuts the segment there, as done here), a command
that fails. An utterance whose transcript is empty (``uttid`` alone on its line) is dropped
with a warning naming it: Kaldi allows it, CTC training cannot use it.

``wav.scp`` entries are files (relative paths are taken from the directory the import runs
in, as in Kaldi, and stored absolute) or commands ending in ``|`` whose standard output is a
WAV file; a command is run once here (with kaldi_native_io) for its duration and rate, unless
``reco2dur`` gives its duration, and again when stage 2 reads the audio.
"""

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional

import soundfile as sf
from lhotse import AudioSource, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from rlhf.manifests import check_disjoint_splits, write_split_manifests
from rlhf.stage import StageMarker, invalidated_on_error

REQUIRED = ("wav.scp", "text", "utt2spk")
OPTIONAL = ("segments", "reco2dur")
# How far past its recording's end a segment may end (Kaldi's extract-segments --max-overshoot);
# such a segment is cut at the end of the audio.
MAX_OVERSHOOT = 0.5


@dataclass
class Entry:
    value: str
    line: int


def table_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a Kaldi table, blank lines left out; an error naming the line if it is not UTF-8."""
    for n, raw in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{n}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); convert "
                             f"the file to UTF-8 (e.g. iconv -f latin1 -t utf-8 {path})") from None
        if line:
            yield n, line


def read_table(path: Path) -> dict[str, Entry]:
    """A Kaldi ``<key> <value>`` table (key and value separated by spaces or a tab; the value may
    be empty, e.g. an empty transcript), with each entry's line number."""
    table: dict[str, Entry] = {}
    for n, line in table_lines(path):
        key, *rest = line.split(maxsplit=1)
        if key in table:
            raise ValueError(f"{path}:{n}: {key} appears twice (first on line {table[key].line}); keep one of them")
        table[key] = Entry(rest[0].strip() if rest else "", n)
    return table


@dataclass
class Segment:
    utt: str
    recording: str
    start: float
    end: Optional[float]  # None: to the end of the recording (Kaldi's -1)
    line: int


def read_segments(path: Path, recordings: Mapping[str, Entry]) -> dict[str, Segment]:
    segments: dict[str, Segment] = {}
    for n, line in table_lines(path):
        fields = line.split()
        where = f"{path}:{n}"
        if len(fields) != 4:
            raise ValueError(f"{where}: expected 4 fields '<utterance> <recording> <start> <end>', got {len(fields)} "
                             f"({line!r}); fix or remove the line")
        utt, reco, start_text, end_text = fields
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            raise ValueError(f"{where}: start and end must be times in seconds, got {start_text!r} and "
                             f"{end_text!r}") from None
        if utt in segments:
            raise ValueError(f"{where}: {utt} appears twice (first on line {segments[utt].line}); keep one of them")
        if reco not in recordings:
            raise ValueError(f"{where}: recording {reco} of {utt} is not in {path.parent / 'wav.scp'}; add it there "
                             f"or remove the line")
        if start < 0:
            raise ValueError(f"{where}: {utt} starts at {start} s, before its recording; times start at 0")
        if end == -1:
            segments[utt] = Segment(utt, reco, start, None, n)
            continue
        if end <= start:
            raise ValueError(f"{where}: {utt} ends at {end} s, not after its start {start} s; fix the times "
                             f"(or write -1 as the end: to the end of the recording)")
        segments[utt] = Segment(utt, reco, start, end, n)
    return segments


@dataclass
class Audio:
    """What one wav.scp entry holds: a file or a command, and (once read) its length."""
    recording: str
    source: str
    is_command: bool
    line: int
    num_samples: Optional[int] = None
    sampling_rate: Optional[int] = None


@dataclass
class DataDir:
    """One Kaldi data directory, its tables read and checked against each other."""
    path: Path
    audio: dict[str, Audio]                 # the recordings that utterances use
    segments: Optional[dict[str, Segment]]  # None: one utterance per recording
    texts: dict[str, Entry]
    speakers: dict[str, Entry]
    durations: dict[str, Entry]             # reco2dur, when given
    empty: list[str]                        # utterances with an empty transcript (dropped)

    @property
    def utterances(self) -> list[str]:
        """The utterances imported (those with a transcript), in table order."""
        ids = self.segments if self.segments is not None else self.audio
        return [u for u in ids if u in self.texts and u not in self.empty]

    def inputs(self) -> list[Path]:
        return [self.path / name for name in REQUIRED + OPTIONAL if (self.path / name).is_file()]

    def audio_fingerprint(self) -> list:
        """Path, size and modification time of each audio file: a replaced file changes it (commands are
        fingerprinted by wav.scp itself)."""
        out = []
        for a in self.audio.values():
            if not a.is_command:
                st = os.stat(a.source)
                out.append([a.source, st.st_size, st.st_mtime_ns])
        return out


def read_data_dir(data_dir: Path, sampling_rate: int) -> DataDir:
    """Read and cross-check the tables of ``data_dir`` and the headers of its audio files (not the commands)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} is not a directory")
    for name in REQUIRED:
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"{data_dir / name} not found: a Kaldi data directory needs "
                                    f"{', '.join(REQUIRED)} (and optionally segments)")
    wav_scp, text, utt2spk = (read_table(data_dir / name) for name in REQUIRED)
    durations = read_table(data_dir / "reco2dur") if (data_dir / "reco2dur").is_file() else {}
    for reco, entry in wav_scp.items():
        if not entry.value or entry.value == "|":
            raise ValueError(f"{data_dir / 'wav.scp'}:{entry.line}: {reco} has no audio file or command")
    segments = read_segments(data_dir / "segments", wav_scp) if (data_dir / "segments").is_file() else None
    utts = segments if segments is not None else wav_scp
    defines = "segments" if segments is not None else "wav.scp"
    for name, table in (("text", text), ("utt2spk", utt2spk)):
        for utt, entry in table.items():
            if utt not in utts:
                raise ValueError(f"{data_dir / name}:{entry.line}: utterance {utt} is not in {data_dir / defines}; "
                                 f"remove the line, or add the utterance to {defines}")
        missing = [u for u in utts if u not in table]
        if missing:
            raise ValueError(f"{data_dir / name} has no entry for {len(missing)} utterance(s), e.g. "
                             f"{', '.join(missing[:5])}; every utterance of {defines} needs one")
    for utt, entry in utt2spk.items():
        if len(entry.value.split()) != 1:
            raise ValueError(f"{data_dir / 'utt2spk'}:{entry.line}: expected '<utterance> <speaker>', got "
                             f"{utt} {entry.value!r}")
    empty = [u for u in utts if not text[u].value]
    used = {s.recording for s in segments.values() if s.utt not in empty} if segments is not None else \
        {u for u in utts if u not in empty}
    audio = {}
    for reco, entry in wav_scp.items():
        if reco not in used:
            continue
        command = entry.value.endswith("|")
        source = entry.value[:-1].strip() if command else os.path.abspath(entry.value)
        audio[reco] = Audio(reco, source, command, entry.line)
        if not command:
            read_file_header(audio[reco], data_dir / "wav.scp", sampling_rate)
    return DataDir(data_dir, audio, segments, text, utt2spk, durations, empty)


def read_file_header(a: Audio, wav_scp: Path, sampling_rate: int) -> None:
    where = f"{wav_scp}:{a.line}: {a.recording}"
    if not Path(a.source).is_file():
        raise FileNotFoundError(f"{where}: audio file {a.source} not found")
    try:
        info = sf.info(a.source)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise ValueError(f"{where}: cannot read {a.source} ({e})") from e
    _check_format(where, a.source, info.samplerate, info.channels, sampling_rate)
    a.num_samples, a.sampling_rate = info.frames, info.samplerate


def _check_format(where: str, what: str, rate: int, channels: int, sampling_rate: int) -> None:
    if rate != sampling_rate:
        raise ValueError(f"{where}: {what} is {rate} Hz, not --sampling-rate {sampling_rate}; set --sampling-rate "
                         f"{rate} (every split must have one rate)")
    if channels != 1:
        raise ValueError(f"{where}: {what} has {channels} channels; an entry of wav.scp must give one (e.g. the "
                         f"command 'sox FILE -t wav - remix 1 |')")


def read_command(a: Audio, wav_scp: Path, sampling_rate: int, durations: Mapping[str, Entry]) -> None:
    """The length of a command's audio: from reco2dur when it has the recording, else by running it."""
    if a.recording in durations:
        entry = durations[a.recording]
        try:
            seconds = float(entry.value)
        except ValueError:
            raise ValueError(f"{wav_scp.parent / 'reco2dur'}:{entry.line}: expected a duration in seconds, got "
                             f"{entry.value!r}") from None
        a.num_samples, a.sampling_rate = round(seconds * sampling_rate), sampling_rate
        return
    import kaldi_native_io  # tools/requirements.txt

    where = f"{wav_scp}:{a.line}: {a.recording}"
    try:
        wave = kaldi_native_io.read_wave(f"{a.source} |")
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "no output"
        raise ValueError(f"{where}: the command '{a.source} |' failed or wrote no WAV audio ({reason}); run it by "
                         f"hand to see why") from None
    _check_format(where, f"the output of '{a.source} |'", int(wave.sample_freq), wave.data.shape[0], sampling_rate)
    a.num_samples, a.sampling_rate = wave.data.shape[1], int(wave.sample_freq)


def build_manifests(d: DataDir, sampling_rate: int, num_jobs: int = 1) -> tuple[RecordingSet, SupervisionSet]:
    """Run the commands (for their length), check the segments against their recordings, build the manifests."""
    wav_scp = d.path / "wav.scp"
    commands = [a for a in d.audio.values() if a.is_command]
    with ThreadPoolExecutor(max(1, num_jobs)) as pool:
        list(pool.map(lambda a: read_command(a, wav_scp, sampling_rate, d.durations), commands))
    recordings = {a.recording: Recording(
        id=a.recording, sources=[AudioSource(type="command" if a.is_command else "file", channels=[0],
                                             source=a.source)],
        sampling_rate=a.sampling_rate, num_samples=a.num_samples, duration=a.num_samples / a.sampling_rate)
        for a in d.audio.values()}
    supervisions = []
    for utt in d.utterances:
        if d.segments is None:
            reco, start, duration = utt, 0.0, recordings[utt].duration
        else:
            s = d.segments[utt]
            reco, start, length = s.recording, s.start, recordings[s.recording].duration
            end = length if s.end is None else s.end
            where = f"{d.path / 'segments'}:{s.line}: {utt}"
            if start >= length:
                raise ValueError(f"{where} starts at {start} s, but recording {reco} is {length:.3f} s long; fix "
                                 f"the times")
            if end > length + MAX_OVERSHOOT:
                raise ValueError(f"{where} ends at {end} s, but recording {reco} is {length:.3f} s long (Kaldi "
                                 f"allows {MAX_OVERSHOOT} s past the end); fix the times")
            duration = min(end, length) - start
        supervisions.append(SupervisionSegment(
            id=utt, recording_id=reco, start=start, duration=duration, channel=0,
            text=" ".join(d.texts[utt].value.split()), speaker=d.speakers[utt].value))
    return RecordingSet.from_recordings(recordings.values()), SupervisionSet.from_segments(supervisions)


def import_data_dirs(dirs: Mapping[str, Path], manifest_dir: Path, corpus: str, sampling_rate: int,
                     num_jobs: int = 1, force: bool = False) -> None:
    """``<manifest_dir>/<corpus>_{recordings,supervisions}_<split>.jsonl.gz`` for each split of ``dirs``
    (which must include ``train``); nothing is written unless every split passes every check, and a
    failure removes the completion marker (stage 1 then refuses the manifests of the last import)."""
    with invalidated_on_error(manifest_dir, f"import_kaldi_datadir_{corpus}"):
        _import_data_dirs(dirs, manifest_dir, corpus, sampling_rate, num_jobs, force)


def _import_data_dirs(dirs: Mapping[str, Path], manifest_dir: Path, corpus: str, sampling_rate: int,
                      num_jobs: int, force: bool) -> None:
    for split, d in dirs.items():
        if split != "train" and "train" in dirs and Path(d).resolve() == Path(dirs["train"]).resolve():
            raise ValueError(f"--{split}-dir {d} is the same directory as --train-dir: a held-out split must not "
                             f"hold training utterances; give a directory of other utterances")
    data = {split: read_data_dir(Path(d), sampling_rate) for split, d in dirs.items()}
    check_disjoint_splits({split: d.utterances for split, d in data.items()},
                          "the Kaldi data directories " + ", ".join(f"{s}={d}" for s, d in dirs.items()))
    audio = hashlib.sha256(repr([data[s].audio_fingerprint() for s in sorted(data)]).encode()).hexdigest()
    marker = StageMarker(manifest_dir, f"import_kaldi_datadir_{corpus}",
                         {"dirs": {k: str(Path(v).resolve()) for k, v in dirs.items()}, "sampling_rate": sampling_rate,
                          "audio": audio},
                         [p for d in data.values() for p in d.inputs()])
    if marker.skip_if_complete(force):
        return
    built = {}
    for split, d in data.items():
        if d.empty:
            logging.warning("%s: dropping %d utterance(s) with an empty transcript: %s", d.path / "text",
                            len(d.empty), ", ".join(f"{u} (line {d.texts[u].line})" for u in d.empty))
        if not d.utterances:
            raise ValueError(f"{d.path}: no utterance with a transcript left to import")
        built[split] = build_manifests(d, sampling_rate, num_jobs)
    for split, (recordings, supervisions) in built.items():  # written only once every split is built
        write_split_manifests(manifest_dir, corpus, split, recordings, supervisions)
        logging.info("%s (%s): %d recordings, %d utterances, %.2f hours, %d speakers", split, dirs[split],
                     len(recordings), len(supervisions), sum(s.duration for s in supervisions) / 3600,
                     len({s.speaker for s in supervisions}))
    marker.write()
