"""A minimal ctypes binding to the eSpeak NG library shipped by ``espeakng-loader``.

Only what the corpus generator needs: pick a voice, set rate/pitch/range, and
synthesize one sentence to a float waveform. No system package and no network.
eSpeak NG keeps global state, so use one ``EspeakSynthesizer`` per process.
"""

import ctypes
from dataclasses import dataclass

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
# espeak_PARAMETER values from speak_lib.h
ESPEAK_RATE, ESPEAK_VOLUME, ESPEAK_PITCH, ESPEAK_RANGE = 1, 2, 3, 4

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class VoiceSettings:
    """An eSpeak NG voice: ``name`` is a voice with optional variant, e.g. ``en-us+f3``."""

    name: str
    rate: int = 160  # words per minute, 80..450
    pitch: int = 50  # base pitch, 0..100
    pitch_range: int = 50  # intonation range, 0..100


class EspeakSynthesizer:
    """Synthesizes text to 16-bit-range float32 audio at ``self.sample_rate`` (22050 Hz)."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._libc = ctypes.CDLL(None)
        data_path = espeakng_loader.get_data_path().encode()
        rate = self._lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data path {data_path.decode()})")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        # Keep a reference: the C library calls back into it.
        self._callback = _SYNTH_CALLBACK(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]

    def _collect(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def synthesize(self, text: str, voice: VoiceSettings, seed: int = 0) -> np.ndarray:
        """Return the waveform for ``text`` as float32 in [-1, 1].

        ``seed`` seeds eSpeak NG's own generator (otherwise seeded from the clock)
        and the C library's ``rand()``, which voices with breath/aspiration noise use, so the output does not depend on what this process
        synthesized before.
        """
        if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice named {voice.name!r}")
        for param, value in ((ESPEAK_RATE, voice.rate), (ESPEAK_PITCH, voice.pitch), (ESPEAK_RANGE, voice.pitch_range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        self._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed & 0x7FFFFFFF))
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        err = self._lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err} for text {text!r}")
        self._lib.espeak_Synchronize()
        if not self._chunks:
            raise RuntimeError(f"eSpeak NG produced no audio for {text!r} with voice {voice.name}")
        return (np.concatenate(self._chunks).astype(np.float32) / 32768.0)
