"""Bundle a model directory: a copy of its lang files and its feature configuration.

Writes into ``<exp_dir>`` (e.g. ``exp/ctc_tdnn``)::

    lang/           tokens.txt, words.txt, lexicon.txt, bpe.model (BPE units only) and
                    HLG.pt (once steps/compile_hlg.sh has made it) of the lang dir it was trained with
    features.json   the fbank the model was trained on: type, bins, sampling rate, frame shift

With the checkpoints (which carry the model configuration) that is everything
``rlhf-transcribe --model-dir`` needs, so the directory can be copied to another machine.
Training bundles the lang files before its first epoch; steps/bundle_model.sh runs again after
HLG is compiled to add it. (Not icefall's "export", which writes pretrained.pt or TorchScript.)
"""

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from lhotse import load_manifest_lazy

from rlhf.lang.compile_hlg import HLG_NAME
from rlhf.stage import StageMarker, atomic_output

LANG_FILES = ("tokens.txt", "words.txt", "lexicon.txt", "bpe.model")  # HLG.pt: bundle_hlg
MODEL_LANG_DIR = "lang"
FEATURES_JSON = "features.json"


@dataclass(frozen=True)
class FeatureConfig:
    """What transcription must reproduce of the training features (lhotse's Fbank, other options default)."""
    type: str
    num_mel_bins: int
    sampling_rate: int
    frame_shift: float

    @classmethod
    def from_cuts(cls, cuts_path: Path) -> "FeatureConfig":
        """Read from the first cut of a manifest written by steps/compute_fbank.sh."""
        cut = next(iter(load_manifest_lazy(cuts_path)), None)
        if cut is None or not cut.has_features:
            raise ValueError(f"{cuts_path}: no cut with features; use the cuts written by steps/compute_fbank.sh")
        return cls(type=cut.features.type, num_mel_bins=cut.features.num_features,
                   sampling_rate=cut.features.sampling_rate, frame_shift=cut.features.frame_shift)

    @classmethod
    def load(cls, exp_dir: Path) -> "FeatureConfig":
        path = Path(exp_dir) / FEATURES_JSON
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: this model directory was not bundled; run "
                                    f"steps/bundle_model.sh <lang-dir> <fbank-dir> {exp_dir}")
        return cls(**json.loads(path.read_text()))


def bundle_model(lang_dir: Path, cuts_path: Path, exp_dir: Path, force: bool = False) -> None:
    """Copy the lang files to ``exp_dir/lang`` and write ``exp_dir/features.json``; HLG.pt too when it exists.

    Training calls :func:`bundle_lang`, the part without HLG.pt: HLG is compiled after
    training (stage 4), and a lang dir that gains HLG.pt must not redo a complete training stage.
    """
    bundle_lang(lang_dir, cuts_path, exp_dir, force)
    if (Path(lang_dir) / HLG_NAME).is_file():
        bundle_hlg(lang_dir, exp_dir, force)


def bundle_lang(lang_dir: Path, cuts_path: Path, exp_dir: Path, force: bool = False) -> None:
    """``exp_dir/lang`` (every lang file but HLG.pt) and ``exp_dir/features.json``.

    Skipped when both exist and were made from the same files; a changed lang dir redoes it,
    replacing ``lang/`` as a whole, atomically (an HLG.pt copied before goes with it: it would be stale).
    """
    lang_dir, exp_dir = Path(lang_dir), Path(exp_dir)
    if not (lang_dir / "tokens.txt").is_file():
        raise FileNotFoundError(f"{lang_dir}/tokens.txt not found: run the lang stage (steps/prepare_lang.sh) first")
    files = [lang_dir / name for name in LANG_FILES if (lang_dir / name).is_file()]
    marker = StageMarker(exp_dir, "bundle_lang", {"files": [f.name for f in files]}, files + [cuts_path])
    out_lang = exp_dir / MODEL_LANG_DIR
    if (out_lang / "tokens.txt").is_file() and (exp_dir / FEATURES_JSON).is_file() and marker.skip_if_complete(force):
        return
    marker.invalidate()
    features = FeatureConfig.from_cuts(cuts_path)
    with atomic_output(out_lang) as tmp:
        tmp.mkdir()
        for f in files:
            shutil.copyfile(f, tmp / f.name)
    with atomic_output(exp_dir / FEATURES_JSON) as tmp:
        tmp.write_text(json.dumps(asdict(features), indent=2) + "\n")
    marker.write()
    logging.info("Copied %s and %s to %s (%s)", lang_dir, FEATURES_JSON, exp_dir,
                 ", ".join(f.name for f in files))


def bundle_hlg(lang_dir: Path, exp_dir: Path, force: bool = False) -> None:
    """Copy ``lang_dir/HLG.pt`` to ``exp_dir/lang/HLG.pt`` unless that copy is current."""
    src, out = Path(lang_dir) / HLG_NAME, Path(exp_dir) / MODEL_LANG_DIR / HLG_NAME
    marker = StageMarker(exp_dir, "bundle_hlg", {}, [src])
    if out.is_file() and marker.skip_if_complete(force):
        return
    marker.invalidate()
    with atomic_output(out) as tmp:
        shutil.copyfile(src, tmp)
    marker.write()
    logging.info("Copied %s to %s", src, out)
