"""Acoustic conditions for synthesized speech: resampling, reverberation, additive noise.

Everything takes an explicit ``numpy.random.Generator`` so a seed fixes the output.
"""

from math import gcd

import numpy as np
from scipy.signal import fftconvolve, resample_poly


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (e.g. eSpeak's 22050 Hz to 16 kHz)."""
    if rate_in == rate_out:
        return audio
    g = gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)


def synthetic_rir(rng: np.random.Generator, rt60: float, sample_rate: int) -> np.ndarray:
    """A room impulse response: a direct path plus exponentially decaying noise.

    The tail's energy falls by 60 dB after ``rt60`` seconds, which is what the
    reverberation time means; a short pre-delay separates it from the direct path.
    """
    length = int(rt60 * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60)  # 10^(-60/20) = e^-6.9078
    predelay = int(rng.uniform(0.005, 0.02) * sample_rate)
    tail[:predelay] = 0.0
    rir = 0.3 * tail / (np.sqrt(np.sum(tail**2)) + 1e-9)
    rir[0] = 1.0
    return rir.astype(np.float32)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir`` and keep the original length and loudness."""
    wet = fftconvolve(audio, rir)[: len(audio)]
    return (wet * (np.sqrt(np.mean(audio**2)) / (np.sqrt(np.mean(wet**2)) + 1e-9))).astype(np.float32)


def colored_noise(rng: np.random.Generator, num_samples: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0: white, 1: pink, 2: brown), unit RMS."""
    spectrum = rng.standard_normal(num_samples // 2 + 1) + 1j * rng.standard_normal(num_samples // 2 + 1)
    freqs = np.arange(num_samples // 2 + 1, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=num_samples)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` into ``audio`` at signal-to-noise ratio ``snr_db`` (power over the whole signal)."""
    speech_power = np.mean(audio**2)
    noise_power = np.mean(noise**2) + 1e-12
    scale = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return (audio + scale * noise).astype(np.float32)
