"""The baseline acoustic model: a 4x-subsampling convolutional front end and a residual TDNN.

Small enough to train on two CPU cores, and every size is an option so it scales up on a GPU.
It uses LayerNorm rather than BatchNorm: no train/eval difference, no statistics polluted by
padding, and forward-mode autodiff (needed for the Hessian-free curvature products) works
through it.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    num_features: int = 80      # fbank bins
    vocab_size: int = 200       # CTC outputs, blank (id 0) included
    subsampling_channels: int = 32
    hidden_dim: int = 256
    num_layers: int = 8
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4)  # cycled over the layers
    dropout: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**{**d, "dilations": tuple(d["dilations"])})


def subsampled_lengths(num_frames: torch.Tensor) -> torch.Tensor:
    """Output frames of the front end (two 3x3 convolutions with stride 2, no padding)."""
    return ((num_frames - 1) // 2 - 1) // 2


class Conv2dSubsampling(nn.Module):
    """(N, T, F) features -> (N, ((T-1)//2-1)//2, D): 4x fewer frames, 40 ms each."""

    def __init__(self, num_features: int, channels: int, out_dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
        )
        out_freq = ((num_features - 1) // 2 - 1) // 2
        self.proj = nn.Linear(channels * out_freq, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.unsqueeze(1))  # (N, C, T', F')
        n, c, t, f = x.shape
        return self.proj(x.permute(0, 2, 1, 3).reshape(n, t, c * f))


class TdnnBlock(nn.Module):
    """Pre-norm residual block: x + Dropout(ReLU(Conv1d(LayerNorm(x)))), 'same' padding."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, D)
        y = self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.dropout(torch.relu(y))


class CtcModel(nn.Module):
    """Features (N, T, F) and their lengths -> CTC log-probs (N, T', V) and lengths T'."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.kernel_size % 2 != 1:
            raise ValueError(f"--kernel-size must be odd, got {config.kernel_size}")
        self.config = config
        self.frontend = Conv2dSubsampling(config.num_features, config.subsampling_channels, config.hidden_dim)
        self.blocks = nn.Sequential(*(
            TdnnBlock(config.hidden_dim, config.kernel_size, config.dilations[i % len(config.dilations)],
                      config.dropout)
            for i in range(config.num_layers)))
        self.final_norm = nn.LayerNorm(config.hidden_dim)
        self.output = nn.Linear(config.hidden_dim, config.vocab_size)

    def forward(self, features: torch.Tensor, num_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.frontend(normalize_per_utterance(features, num_frames))
        lengths = subsampled_lengths(num_frames)
        x = self.blocks(x)
        return self.output(self.final_norm(x)).log_softmax(dim=-1), lengths


def normalize_per_utterance(features: torch.Tensor, num_frames: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per utterance and bin over its real frames; padding set to 0.

    Synthesized voices differ a lot in level and timbre; this is the CMVN Kaldi applies per speaker.
    """
    mask = (torch.arange(features.size(1), device=features.device)[None, :] < num_frames[:, None]).unsqueeze(-1)
    count = num_frames.clamp(min=1).to(features.dtype)[:, None, None]
    mean = (features * mask).sum(1, keepdim=True) / count
    var = (((features - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (features - mean) / (var + 1e-5).sqrt() * mask


def pick_device(name: str) -> torch.device:
    """``--device``: ``auto`` is the GPU when there is one, else the CPU; anything else is torch's name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
