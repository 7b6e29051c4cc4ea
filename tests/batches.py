"""Hand-made lhotse-style batches and a word-unit lang dir, for tests that need no corpus."""

from pathlib import Path
from types import SimpleNamespace

import torch

WORDS = ["A", "B", "C"]


def make_word_lang(lang_dir: Path) -> Path:
    """tokens.txt for word units: <blk> <sos/eos> <unk> A B C."""
    lang_dir.mkdir(parents=True, exist_ok=True)
    tokens = ["<blk>", "<sos/eos>", "<unk>", *WORDS]
    (lang_dir / "tokens.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens)))
    return lang_dir


def make_batch(num_frames: list[int], texts: list[str], num_features: int = 80, seed: int = 0) -> dict:
    """What K2SpeechRecognitionDataset yields: padded features and supervisions (one per cut)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(len(num_frames), max(num_frames), num_features, generator=g)
    for i, n in enumerate(num_frames):
        features[i, n:] = -23.0
    return {
        "inputs": features,
        "supervisions": {
            "sequence_idx": torch.arange(len(num_frames), dtype=torch.int32),
            "start_frame": torch.zeros(len(num_frames), dtype=torch.int32),
            "num_frames": torch.tensor(num_frames, dtype=torch.int32),
            "text": texts,
            "cut": [SimpleNamespace(id=f"utt{i}", duration=n / 100) for i, n in enumerate(num_frames)],
        },
    }
