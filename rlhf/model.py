"""The baseline acoustic model: a 4x-subsampling convolutional front end, then an encoder.

Two encoders (``--encoder``):
- ``tdnn``: residual TDNN blocks. Small enough to train on two CPU cores. It uses LayerNorm
  rather than BatchNorm: no train/eval difference, no statistics polluted by padding, and
  forward-mode autodiff (the Hessian-free curvature products) works through it.
- ``conformer``: torchaudio's Conformer (Gulati et al. 2020), the encoder of most current
  recipes (icefall, ESPnet), with the padding masked in attention and convolutions. Its
  convolution module keeps torchaudio's BatchNorm: decoding, lattices and fine-tuning run in
  eval mode, where BatchNorm is a fixed per-channel map, so an utterance's output does not
  depend on its batch (GroupNorm would mix the padding into every frame's statistics).
  Forward-mode autodiff passes it: torchaudio's attention is not batch-first, so torch 1.13
  never takes its fused eval-mode kernel (which forward mode cannot pass; where an op fails,
  ``rlhf.hf.ggn_vector_product`` falls back to the double-backward R-op by itself).

Every size is an option, so both scale up on a GPU.
"""

import argparse
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Optional

import torch
import torchaudio
from torch import nn

ENCODERS = ("tdnn", "conformer")


@dataclass(frozen=True)
class ModelConfig:
    num_features: int = 80      # fbank bins (from the cuts, not an option)
    vocab_size: int = 200       # CTC outputs, blank (id 0) included (from tokens.txt, not an option)
    encoder: str = field(default="tdnn", metadata={
        "help": "encoder after the 4x subsampling front end: residual TDNN blocks, or torchaudio's Conformer",
        "choices": ENCODERS})
    subsampling_channels: int = field(default=32, metadata={"help": "channels of the 4x subsampling convolutions"})
    hidden_dim: int = field(default=256, metadata={"help": "encoder width (the conformer's attention dimension)"})
    num_layers: int = field(default=8, metadata={"help": "encoder blocks (TDNN or conformer)"})
    kernel_size: int = field(default=3, metadata={"help": "TDNN convolution kernel in frames (odd)"})
    dilations: tuple[int, ...] = (1, 2, 4)  # TDNN dilations, cycled over the layers (--dilations 1,2,4)
    num_heads: int = field(default=4, metadata={"help": "conformer attention heads"})
    ffn_dim: int = field(default=1024, metadata={"help": "conformer feed-forward hidden size"})
    conv_kernel_size: int = field(default=15, metadata={"help": "conformer depthwise convolution kernel in frames (odd)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout probability in every encoder block"})

    def check(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"--encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.encoder == "tdnn" and self.kernel_size % 2 != 1:
            raise ValueError(f"--kernel-size must be odd, got {self.kernel_size}")
        if self.encoder == "conformer":
            if self.hidden_dim % self.num_heads:
                raise ValueError(f"--hidden-dim ({self.hidden_dim}) must be a multiple of --num-heads "
                                 f"({self.num_heads})")
            if self.conv_kernel_size % 2 != 1:
                raise ValueError(f"--conv-kernel-size must be odd, got {self.conv_kernel_size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Checkpoints made before an option existed get its default (the TDNN's behaviour)."""
        return cls(**{**d, "dilations": tuple(d["dilations"])})


# The options of add_model_options: the fields with help; the rest come from the data or are parsed apart.
OPTION_FIELDS = tuple(f.name for f in fields(ModelConfig) if "help" in f.metadata)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The ``ModelConfig`` options of stage 3 (every later stage reads them from the checkpoint)."""
    from rlhf.cli import add_dataclass_options  # here: rlhf.cli -> rlhf.distributed imports this module

    add_dataclass_options(p, ModelConfig(), names=OPTION_FIELDS)
    p.add_argument("--dilations", default=",".join(map(str, ModelConfig.dilations)),
                   help="TDNN dilations, comma-separated, cycled over the blocks")


def model_config_from_args(args: argparse.Namespace, num_features: int, vocab_size: int) -> ModelConfig:
    from rlhf.cli import dataclass_from_args

    config = replace(dataclass_from_args(ModelConfig, args, names=OPTION_FIELDS), num_features=num_features,
                     vocab_size=vocab_size, dilations=tuple(int(x) for x in args.dilations.split(",")))
    config.check()
    return config


def subsampled_lengths(num_frames: torch.Tensor) -> torch.Tensor:
    """Output frames of the front end (two 3x3 convolutions with stride 2, no padding)."""
    return ((num_frames - 1) // 2 - 1) // 2


# Fewest input (fbank) frames the front end turns into at least one output frame: 7, i.e. 65 ms of
# audio at a 10 ms frame shift. k2 refuses a shorter utterance outright (``assert duration > 0``
# in k2.DenseFsaVec), so stage 2 drops such utterances and rlhf-transcribe refuses them.
MIN_INPUT_FRAMES = next(t for t in range(1, 64) if subsampled_lengths(t) >= 1)


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


class ConformerBlocks(nn.Module):
    """torchaudio's conformer layers over (N, T, D), with the padding masked everywhere.

    Attention gets a key padding mask from the lengths, and the padded frames are zeroed at the
    input of every depthwise convolution (a forward pre-hook, so the modules and their parameter
    names stay torchaudio's). Without the second, the convolution carries the padding into an
    utterance's last frames and the next layer's attention spreads it over all of them.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.conformer = torchaudio.models.Conformer(
            input_dim=config.hidden_dim, num_heads=config.num_heads, ffn_dim=config.ffn_dim,
            num_layers=config.num_layers, depthwise_conv_kernel_size=config.conv_kernel_size,
            dropout=config.dropout)
        self._keep: Optional[torch.Tensor] = None  # (N, 1, T): 1 on real frames, set by forward
        for layer in self.conformer.conformer_layers:
            layer.conv_module.sequential[2].register_forward_pre_hook(self._zero_padding)

    def _zero_padding(self, module: nn.Module, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        return (inputs[0] * self._keep,)

    def layers(self) -> list[nn.Module]:
        return list(self.conformer.conformer_layers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # torchaudio's Conformer.forward, with the mask sized by x rather than by max(lengths).
        padding = torch.arange(x.size(1), device=x.device)[None, :] >= lengths[:, None]
        self._keep = (~padding).unsqueeze(1).to(x.dtype)
        x = x.transpose(0, 1)
        for layer in self.conformer.conformer_layers:
            x = layer(x, padding)
        self._keep = None
        return x.transpose(0, 1)


class TdnnBlocks(nn.Sequential):
    """The residual TDNN blocks over (N, T, D); the lengths are not needed ('same' convolutions)."""

    def __init__(self, config: ModelConfig):
        super().__init__(*(
            TdnnBlock(config.hidden_dim, config.kernel_size, config.dilations[i % len(config.dilations)],
                      config.dropout)
            for i in range(config.num_layers)))

    def layers(self) -> list[nn.Module]:
        return list(self)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


class CtcModel(nn.Module):
    """Features (N, T, F) and their lengths -> CTC log-probs (N, T', V) and lengths T'."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.check()
        self.config = config
        self.frontend = Conv2dSubsampling(config.num_features, config.subsampling_channels, config.hidden_dim)
        self.blocks = TdnnBlocks(config) if config.encoder == "tdnn" else ConformerBlocks(config)
        self.final_norm = nn.LayerNorm(config.hidden_dim)
        self.output = nn.Linear(config.hidden_dim, config.vocab_size)

    def encoder_layers(self) -> list[nn.Module]:
        """The encoder's blocks in order, input side first (``--trainable top-K`` takes the last ones)."""
        return self.blocks.layers()

    def forward(self, features: torch.Tensor, num_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.frontend(normalize_per_utterance(features, num_frames))
        lengths = subsampled_lengths(num_frames)
        x = self.blocks(x, lengths)
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
    """``--device``: ``auto`` is the GPU when there is one, else the CPU; anything else is torch's name.

    ValueError for a name torch does not know or a GPU this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: this machine has no usable CUDA GPU; use --device cpu (or auto)")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 .. cuda:{count - 1}")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
