"""Short synthesized utterances for the corpus-layout fixtures (LibriSpeech, Kaldi data dirs).

eSpeak NG speaks sentences of the project's grammar (a few ms each); the fixtures only need
real-sounding audio with transcripts, not a corpus a model can learn in seconds.
"""

import functools
import random
from dataclasses import dataclass

import numpy as np

from rlhf.corpus.acoustics import resample
from rlhf.corpus.espeak import EspeakSynthesizer, VoiceSettings
from rlhf.corpus.grammar import SentenceGrammar

VOICES = ("en-us+m3", "en-gb-x-rp+f2", "en+m1", "en-us-nyc+f3")


@dataclass
class Utterance:
    text: str
    audio: np.ndarray  # float32 at the requested rate


@functools.lru_cache(maxsize=1)
def _synthesizer() -> EspeakSynthesizer:
    return EspeakSynthesizer()  # eSpeak NG keeps global state: one per process


def utterances(n: int, seed: int, speaker: int, rate: int = 16000, max_words: int = 6) -> list[Utterance]:
    """``n`` sentences of 3 to ``max_words`` words spoken by voice ``speaker`` (cycled), at ``rate`` Hz."""
    rng = random.Random(seed)
    grammar = SentenceGrammar(max_words=max_words)
    synth = _synthesizer()
    voice = VoiceSettings(VOICES[speaker % len(VOICES)], rate=200)
    out = []
    for i in range(n):
        text = grammar.sentence(rng)
        audio = synth.synthesize(text, voice, seed=seed * 1000 + i)
        out.append(Utterance(text, 0.5 * resample(audio, synth.sample_rate, rate) / (np.abs(audio).max() + 1e-9)))
    return out
