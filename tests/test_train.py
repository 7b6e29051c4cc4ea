"""Stage 3: the k2 CTC loss, training steps, checkpoints and exact resume."""

import json
import shutil

import pytest
import torch

from batches import make_batch, make_word_lang
from conftest import TINY_OPTIONS, run_recipe
from rlhf import distributed
from rlhf.checkpoint import average_checkpoints, checkpoint_path, load_checkpoint, load_model, save_checkpoint
from rlhf.ctc import CtcGraphCompiler, ctc_loss, greedy_search
from rlhf.data import batch_inputs, load_cuts, make_dataloader
from rlhf.lang.tokenizer import Tokenizer
from rlhf.model import CtcModel, ModelConfig
from rlhf.train import TrainConfig, Trainer, train

TINY_MODEL = dict(hidden_dim=32, num_layers=2, subsampling_channels=8)


@pytest.fixture
def word_tokenizer(tmp_path):
    return Tokenizer(make_word_lang(tmp_path / "lang"))


def test_k2_ctc_loss_equals_torch_ctc_loss(word_tokenizer):
    torch.manual_seed(0)
    texts = ["A B B C", "C", "A A"]
    lengths = torch.tensor([12, 5, 9])
    log_probs = torch.randn(3, 12, word_tokenizer.vocab_size).log_softmax(-1)  # k2 wants float32
    ours = ctc_loss(log_probs, lengths, texts, CtcGraphCompiler(word_tokenizer))
    targets = word_tokenizer.encode(texts)
    reference = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), torch.tensor([t for seq in targets for t in seq]), lengths,
        torch.tensor([len(t) for t in targets]), blank=0, reduction="none")
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-4)


def test_impossible_transcript_batch_is_skipped_and_weights_stay(word_tokenizer):
    torch.manual_seed(0)
    model = CtcModel(ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL))
    trainer = Trainer(model, word_tokenizer, TrainConfig(), torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # 40 input frames give 9 output frames: too few for 12 words.
    batch = make_batch([40, 40], ["A B C A B C A B C A B C", "A"])
    assert trainer.train_step(batch) is None
    assert trainer.step == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert trainer.train_step(make_batch([40, 40], ["A B", "C"])) is not None
    assert trainer.step == 1


def test_a_few_steps_lower_the_loss(word_tokenizer):
    torch.manual_seed(0)
    model = CtcModel(ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL, dropout=0.0))
    trainer = Trainer(model, word_tokenizer, TrainConfig(lr=3e-3, warmup_steps=1), torch.device("cpu"))
    batch = make_batch([120, 100, 80], ["A B C", "C A", "B"])
    losses = [trainer.train_step(batch) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_checkpoint_reloads_and_decodes_identically(tmp_path, word_tokenizer):
    torch.manual_seed(0)
    model = CtcModel(ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL)).eval()
    save_checkpoint(tmp_path / "epoch-1.pt", model)
    reloaded = load_model(tmp_path / "epoch-1.pt").eval()
    features, num_frames, _, _ = batch_inputs(make_batch([90, 60], ["A", "B"]), torch.device("cpu"))
    with torch.no_grad():
        out1, len1 = model(features, num_frames)
        out2, len2 = reloaded(features, num_frames)
    assert torch.equal(out1, out2) and torch.equal(len1, len2)
    assert greedy_search(out1, len1) == greedy_search(out2, len2)


def test_checkpoint_of_another_configuration_names_the_mismatch(tmp_path, word_tokenizer):
    config = ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL)
    save_checkpoint(tmp_path / "epoch-1.pt", CtcModel(config))
    other = ModelConfig(vocab_size=word_tokenizer.vocab_size, **{**TINY_MODEL, "hidden_dim": 48})
    with pytest.raises(ValueError, match=r"hidden_dim: checkpoint has 32, options say 48"):
        load_checkpoint(tmp_path / "epoch-1.pt", expected=other)


def test_average_of_one_checkpoint_is_the_checkpoint(tmp_path, word_tokenizer):
    model = CtcModel(ModelConfig(vocab_size=word_tokenizer.vocab_size, **TINY_MODEL))
    save_checkpoint(checkpoint_path(tmp_path, 1), model)
    save_checkpoint(checkpoint_path(tmp_path, 2), model)
    averaged = average_checkpoints(tmp_path, epoch=2, avg=2)
    assert all(torch.allclose(averaged.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="--avg"):
        average_checkpoints(tmp_path, epoch=2, avg=3)


def test_resume_equals_uninterrupted_training(tiny_recipe, tmp_path):
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    model_config = ModelConfig(vocab_size=50, **TINY_MODEL)
    config = TrainConfig(num_epochs=2, max_duration=20, warmup_steps=5, lr=3e-3)
    exp = tmp_path / "exp"
    train(lang, fbank, exp, "synth", model_config, config, device_name="cpu")
    uninterrupted = torch.load(checkpoint_path(exp, 2))
    assert (exp / "training-curve.png").stat().st_size > 0
    assert list((exp / "tensorboard").glob("events.out.tfevents.*"))

    # An interruption during epoch 2 leaves epoch-1.pt; resuming from it must give the same epoch 2.
    checkpoint_path(exp, 2).unlink()
    train(lang, fbank, exp, "synth", model_config, config, start_epoch=2, device_name="cpu")
    resumed = torch.load(checkpoint_path(exp, 2))
    for k, v in uninterrupted["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert uninterrupted["history"][1]["train_loss"] == resumed["history"][1]["train_loss"]


def test_resume_with_other_model_options_fails(tiny_recipe, tmp_path):
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    exp = tmp_path / "exp"
    shutil.copytree(tiny_recipe.model_dir, exp)
    other = ModelConfig(vocab_size=50, hidden_dim=48, num_layers=2)
    with pytest.raises(ValueError, match="hidden_dim"):
        train(lang, fbank, exp, "synth", other, TrainConfig(num_epochs=2), start_epoch=2, device_name="cpu")


def test_batches_carry_texts_and_frames_of_their_own_cuts(tiny_recipe):
    cuts = load_cuts(tiny_recipe.data_dir / "fbank" / "synth_cuts_dev.jsonl.gz")
    by_id = {c.id: c for c in cuts}
    for batch in make_dataloader(cuts, max_duration=10, shuffle=False):
        features, num_frames, texts, cut_ids = batch_inputs(batch, torch.device("cpu"))
        for i, cut_id in enumerate(cut_ids):
            assert texts[i] == by_id[cut_id].supervisions[0].text
            assert num_frames[i] == by_id[cut_id].num_frames


@pytest.mark.slow
def test_training_is_deterministic_across_processes(tiny_recipe, tmp_path):
    """The same seed gives the same weights in a fresh process (SpecAugment and dropout included)."""
    work = tmp_path / "copy"
    shutil.copytree(tiny_recipe.workdir, work, symlinks=True)
    result = run_recipe(work, *TINY_OPTIONS, "--stage", "3", "--stop-stage", "3", "--force", "true")
    assert result.returncode == 0, result.stdout
    first = torch.load(checkpoint_path(tiny_recipe.model_dir, 2))["model"]
    again = torch.load(checkpoint_path(work / "exp" / "ctc_tdnn", 2))["model"]
    for k, v in first.items():
        assert torch.equal(v, again[k]), k


def test_resume_with_other_training_options_names_them(tiny_recipe, tmp_path):
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    exp = tmp_path / "exp"
    shutil.copytree(tiny_recipe.model_dir, exp)
    saved = torch.load(checkpoint_path(exp, 1))
    model_config = ModelConfig.from_dict(saved["model_config"])
    config = TrainConfig(**{**saved["train_config"], "lr": 0.5, "num_epochs": 3})
    with pytest.raises(ValueError, match=r"--lr: checkpoint has .*, options say 0.5"):
        train(lang, fbank, exp, "synth", model_config, config, start_epoch=2, device_name="cpu")


def recorded_progress_bars(monkeypatch) -> list:
    """Every bar rlhf.distributed.progress_bar makes from now on, kept for inspection."""
    bars, real = [], distributed.progress_bar

    def recording(*args, **kwargs):
        bars.append(real(*args, **kwargs))
        return bars[-1]

    monkeypatch.setattr(distributed, "progress_bar", recording)
    return bars


def test_epoch_progress_bar_counts_to_the_epochs_batches(tiny_recipe, tmp_path, monkeypatch):
    """The stage-3 bar has a total, the batches the sampler gives (issue 17, item 14)."""
    bars = recorded_progress_bars(monkeypatch)
    lang, fbank = tiny_recipe.data_dir / "lang_bpe_50", tiny_recipe.data_dir / "fbank"
    config = TrainConfig(num_epochs=2, max_duration=15, warmup_steps=5)
    train(lang, fbank, tmp_path / "exp", "synth", ModelConfig(vocab_size=50, **TINY_MODEL), config,
          device_name="cpu")
    history = json.loads((tmp_path / "exp" / "metrics.json").read_text())
    epoch_bars = [bar for bar in bars if bar.desc.startswith("epoch")]
    assert [(bar.total, bar.n) for bar in epoch_bars] == [(h["num_batches"], h["num_batches"]) for h in history]
    assert history[0]["num_batches"] > 1
