"""The acoustic model's encoders: the TDNN and torchaudio's Conformer behind ``--encoder``."""

import argparse
import logging

import pytest
import torch
from torch.nn.utils.stateless import functional_call

from batches import make_batch, make_word_lang
from rlhf.checkpoint import load_model, save_checkpoint
from rlhf.finetune import trainable_parameters
from rlhf.hf import module_ggn_product
from rlhf.lang.tokenizer import Tokenizer
from rlhf.model import CtcModel, ModelConfig, add_model_options, model_config_from_args
from rlhf.train import TrainConfig, Trainer

TINY_CONFORMER = dict(encoder="conformer", hidden_dim=16, num_layers=2, num_heads=2, ffn_dim=32,
                      conv_kernel_size=5, subsampling_channels=4)


def features(lengths: list[int], num_features: int = 80, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), num_features, generator=gen)
    return x, torch.tensor(lengths)


def test_conformer_options_build_the_conformer():
    p = argparse.ArgumentParser()
    add_model_options(p)
    args = p.parse_args(["--encoder", "conformer", "--hidden-dim", "16", "--num-heads", "2", "--ffn-dim", "32",
                         "--conv-kernel-size", "5", "--num-layers", "3"])
    model = CtcModel(model_config_from_args(args, num_features=80, vocab_size=7))
    assert len(model.encoder_layers()) == 3
    assert type(model.encoder_layers()[0]).__name__ == "ConformerLayer"  # torchaudio's
    with pytest.raises(ValueError, match="--num-heads"):
        model_config_from_args(p.parse_args(["--encoder", "conformer", "--hidden-dim", "15"]), 80, 7)
    with pytest.raises(SystemExit):
        p.parse_args(["--encoder", "lstm"])


def test_conformer_output_ignores_padding_frames():
    """An utterance's log-probs do not depend on how much padding its batch adds (the attention mask)."""
    torch.manual_seed(0)
    model = CtcModel(ModelConfig(vocab_size=7, **TINY_CONFORMER)).eval()
    x, lengths = features([60, 40])
    with torch.no_grad():
        batched, out_lengths = model(x, lengths)
        alone, _ = model(x[1:, :40], lengths[1:])
    assert out_lengths.tolist() == [14, 9]
    torch.testing.assert_close(batched[1, :9], alone[0], rtol=0, atol=1e-5)


@pytest.fixture
def word_tokenizer(tmp_path):
    return Tokenizer(make_word_lang(tmp_path / "lang"))


def test_conformer_trains_and_lowers_the_loss(word_tokenizer, tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=word_tokenizer.vocab_size, **{**TINY_CONFORMER, "hidden_dim": 32}, dropout=0.0)
    model = CtcModel(config)
    trainer = Trainer(model, word_tokenizer, TrainConfig(lr=3e-3, warmup_steps=1), torch.device("cpu"))
    batch = make_batch([120, 100, 80], ["A B C", "C A", "B"])
    losses = [trainer.train_step(batch) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0], losses
    # The checkpoint carries the encoder, so every later stage rebuilds the same model.
    save_checkpoint(tmp_path / "epoch-1.pt", model, epoch=1)
    loaded = load_model(tmp_path / "epoch-1.pt")
    assert loaded.config.encoder == "conformer"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_trainable_top_k_takes_the_last_conformer_layers():
    model = CtcModel(ModelConfig(vocab_size=7, **TINY_CONFORMER))
    params = trainable_parameters(model, "top-2")
    last = model.encoder_layers()[-1]
    expected = {id(p) for m in (model.final_norm, model.output, last) for p in m.parameters()}
    assert {id(p) for p in params} == expected
    assert not any(p.requires_grad for p in model.encoder_layers()[0].parameters())


@pytest.mark.parametrize("forward_mode", [True, False])
def test_conformer_ggn_product_equals_explicit_jacobian_product(forward_mode, caplog):
    """G v = J^T H J v through the Conformer (attention, depthwise convolution, GroupNorm), the
    curvature-vector product of the Hessian-free stage; H is the softmax's, as stage 7 uses."""
    torch.manual_seed(0)
    model = CtcModel(ModelConfig(vocab_size=5, num_features=16, **{**TINY_CONFORMER, "hidden_dim": 8,
                                                                   "ffn_dim": 8, "num_layers": 1})).double().eval()
    x, lengths = features([20, 15], num_features=16)
    x = x.double()
    named = [(n, p) for n, p in model.named_parameters()]
    names, params = [n for n, _ in named], tuple(p.detach() for _, p in named)
    log_probs = model(x, lengths)[0].detach()
    prob = log_probs.exp()
    curvature = lambda t: prob * t - prob * (prob * t).sum(-1, keepdim=True)  # noqa: E731
    gen = torch.Generator().manual_seed(1)
    vec = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    with caplog.at_level(logging.WARNING, logger="rlhf.hf"):
        gv = module_ggn_product(model, (x, lengths), vec, curvature, output_fn=lambda out: out[0],
                                forward_mode=forward_mode)

    def fn(*ps):
        return functional_call(model, dict(zip(names, ps)), (x, lengths))[0]

    jac = torch.autograd.functional.jacobian(fn, params)
    rows = log_probs.numel()
    jac = torch.cat([j.reshape(rows, -1) for j in jac], dim=1)
    h = torch.block_diag(*[torch.diag(row) - torch.outer(row, row) for row in prob.reshape(-1, 5)])
    flat_v = torch.cat([v.reshape(-1) for v in vec])
    flat_gv = torch.cat([g.reshape(-1) for g in gv])
    torch.testing.assert_close(flat_gv, jac.T @ h @ jac @ flat_v, rtol=1e-9, atol=1e-10)
    assert flat_v @ flat_gv > 0
    # torchaudio's attention is not batch-first, so torch's fused kernel is not used and forward mode passes.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
