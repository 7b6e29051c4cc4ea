"""English sentences spoken by eSpeak NG voices, with room reverberation and noise: the default corpus.

Every utterance's text, voice and acoustic conditions come from the seed alone, and every
utterance is synthesized in a freshly forked process (eSpeak NG carries state from one
sentence to the next), so the same CorpusConfig gives the same bytes.
"""

import logging
import multiprocessing
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from rlhf.corpus.acoustics import add_noise, colored_noise, resample, reverberate, synthetic_rir
from rlhf.corpus.espeak import EspeakSynthesizer, VoiceSettings
from rlhf.corpus.grammar import SentenceGrammar
from rlhf.manifests import SPLITS
from rlhf.stage import StageMarker, atomic_output

SAMPLE_RATE = 16000
# eSpeak NG's English accents (en-Shaw, the Shavian-script voice, is left out) and
# voice variants that sound like speech rather than effects.
ACCENTS = ("en", "en-us", "en-us-nyc", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt3", "Andy", "linda", "steph", "paul")


@dataclass(frozen=True)
class CorpusConfig:
    """What the corpus is made from; the same config always gives the same bytes."""

    seed: int = 1
    num_train: int = 6000
    num_dev: int = 200
    num_test: int = 200
    num_speakers: dict[str, int] = field(default_factory=lambda: {"train": 100, "dev": 8, "test": 8})
    snr_min: float = 5.0
    snr_max: float = 25.0
    reverb_prob: float = 0.5
    rt60_min: float = 0.2
    rt60_max: float = 0.7

    def __post_init__(self) -> None:
        for split in SPLITS:
            if self.num_utterances(split) < 1 or self.num_speakers[split] < 1:
                raise ValueError(f"--num-{split} and the number of {split} speakers must be >= 1")
        if sum(self.num_speakers.values()) > len(ACCENTS) * len(VARIANTS):
            raise ValueError(f"at most {len(ACCENTS) * len(VARIANTS)} distinct voices are available")
        if not self.snr_min <= self.snr_max or not self.rt60_min <= self.rt60_max:
            raise ValueError("need --snr-min <= --snr-max and --rt60-min <= --rt60-max")
        if not 0.0 <= self.reverb_prob <= 1.0:
            raise ValueError(f"--reverb-prob must be in [0, 1], got {self.reverb_prob}")

    def num_utterances(self, split: str) -> int:
        return {"train": self.num_train, "dev": self.num_dev, "test": self.num_test}[split]


@dataclass(frozen=True)
class Speaker:
    id: str
    voice: VoiceSettings
    split: str


@dataclass(frozen=True)
class Utterance:
    id: str
    split: str
    speaker: Speaker
    text: str
    seed: int  # seeds this utterance's acoustic conditions


def make_speakers(config: CorpusConfig) -> list[Speaker]:
    """Distinct voices (accent x variant) with spread rate and pitch; splits get disjoint speakers."""
    rng = random.Random(config.seed)
    voices = [f"{accent}+{variant}" for accent in ACCENTS for variant in VARIANTS]
    rng.shuffle(voices)
    speakers, k = [], 0
    for split in SPLITS:
        for _ in range(config.num_speakers[split]):
            voice = VoiceSettings(
                name=voices[k], rate=rng.randint(135, 195), pitch=rng.randint(25, 75), pitch_range=rng.randint(30, 90)
            )
            speakers.append(Speaker(id=f"spk{k + 1:03d}", voice=voice, split=split))
            k += 1
    return speakers


def plan_utterances(config: CorpusConfig, speakers: list[Speaker]) -> list[Utterance]:
    """Texts and speakers for every utterance; dev/test sentences never occur in train."""
    rng = random.Random(config.seed * 1000003 + 17)
    grammar = SentenceGrammar()
    seen: set[str] = set()
    utterances = []
    for split_index, split in enumerate(SPLITS):
        split_speakers = [s for s in speakers if s.split == split]
        for i in range(config.num_utterances(split)):
            text = grammar.sentence(rng)
            while text in seen:  # unique sentences: a dev/test sentence is never a training one
                text = grammar.sentence(rng)
            seen.add(text)
            speaker = split_speakers[i % len(split_speakers)]
            utt_seed = int(np.random.SeedSequence([config.seed, split_index, i]).generate_state(1)[0])
            utterances.append(Utterance(f"{speaker.id}-{split}-{i:05d}", split, speaker, text, utt_seed))
    return utterances


def render(utt: Utterance, config: CorpusConfig) -> tuple[np.ndarray, dict]:
    """Speech for one utterance at 16 kHz with its reverberation and noise."""
    synth = EspeakSynthesizer()
    speech = synth.synthesize(utt.text, utt.speaker.voice, seed=utt.seed)
    speech = resample(speech, synth.sample_rate, SAMPLE_RATE)
    rng = np.random.default_rng(utt.seed)
    rt60 = 0.0
    if rng.random() < config.reverb_prob:
        rt60 = float(rng.uniform(config.rt60_min, config.rt60_max))
        speech = reverberate(speech, synthetic_rir(rng, rt60, SAMPLE_RATE))
    lead, trail = (int(rng.uniform(0.1, 0.4) * SAMPLE_RATE) for _ in range(2))
    padded = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)])
    snr = float(rng.uniform(config.snr_min, config.snr_max))
    colour = float(rng.choice([0.0, 1.0, 2.0]))
    noisy = add_noise(padded, colored_noise(rng, len(padded), colour), snr)
    noisy *= rng.uniform(0.3, 0.9) / (np.max(np.abs(noisy)) + 1e-9)
    return noisy, {"snr_db": round(snr, 2), "noise_exponent": colour, "rt60_s": round(rt60, 3)}


def _render_and_write(args: tuple[Utterance, CorpusConfig, Path]) -> dict:
    utt, config, corpus_dir = args
    audio, conditions = render(utt, config)
    path = corpus_dir / utt.split / "wav" / utt.speaker.id / f"{utt.id}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return conditions


def synthesize_corpus(config: CorpusConfig, corpus_dir: Path, num_jobs: int = 1, force: bool = False) -> None:
    """Write the corpus to ``corpus_dir`` (skipped when it is already complete for ``config``)."""
    if num_jobs < 1:
        raise ValueError(f"--nj must be above 0, got {num_jobs}")
    marker = StageMarker(corpus_dir, "synthesize", vars(config))
    if corpus_dir.exists() and not (corpus_dir / "speakers.tsv").exists():
        raise FileExistsError(f"{corpus_dir} exists but was not made by local/synthesize_corpus.sh; "
                              f"remove it or choose another corpus directory")
    if corpus_dir.exists() and marker.skip_if_complete(force):
        return
    speakers = make_speakers(config)
    utterances = plan_utterances(config, speakers)
    logging.info("Synthesizing %d utterances from %d voices into %s with %d jobs",
                 len(utterances), len(speakers), corpus_dir, num_jobs)
    with atomic_output(corpus_dir) as tmp_dir:
        tmp_dir.mkdir(parents=True)
        # One fresh fork per utterance (maxtasksperchild=1) from a process that never
        # synthesized: eSpeak NG's state then never leaks from one sentence into another.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # fork children with the imports done
        with context.Pool(num_jobs, maxtasksperchild=1) as pool:
            jobs = [(utt, config, tmp_dir) for utt in utterances]
            conditions = list(tqdm(pool.imap(_render_and_write, jobs, chunksize=1), total=len(jobs), desc="synthesize"))
        _write_tables(tmp_dir, speakers, utterances, conditions)
    marker.write()
    logging.info("Corpus written to %s", corpus_dir)


def _write_tables(corpus_dir: Path, speakers: list[Speaker], utterances: list[Utterance], conditions: list[dict]) -> None:
    with open(corpus_dir / "speakers.tsv", "w") as f:
        f.write("speaker\tvoice\trate\tpitch\trange\tsplit\n")
        for s in speakers:
            f.write(f"{s.id}\t{s.voice.name}\t{s.voice.rate}\t{s.voice.pitch}\t{s.voice.pitch_range}\t{s.split}\n")
    for split in SPLITS:
        rows = [(u, c) for u, c in zip(utterances, conditions) if u.split == split]
        d = corpus_dir / split
        (d / "text").write_text("".join(f"{u.id} {u.text}\n" for u, _ in rows))
        (d / "utt2spk").write_text("".join(f"{u.id} {u.speaker.id}\n" for u, _ in rows))
        (d / "wav.scp").write_text("".join(f"{u.id} {split}/wav/{u.speaker.id}/{u.id}.wav\n" for u, _ in rows))
        (d / "conditions.tsv").write_text(
            "utterance\tsnr_db\tnoise_exponent\trt60_s\n"
            + "".join(f"{u.id}\t{c['snr_db']}\t{c['noise_exponent']}\t{c['rt60_s']}\n" for u, c in rows)
        )
