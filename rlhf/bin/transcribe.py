"""Transcribe audio files with a trained model directory (rlhf-transcribe, steps/transcribe.sh).

    rlhf-transcribe --model-dir exp/ctc_tdnn a.wav b.flac > transcripts.txt

Prints ``<file> <transcript>`` on stdout for each file, in the order given; logs go to stderr.
The model directory must carry ``lang/`` and ``features.json`` (training writes them;
``steps/bundle_model.sh`` adds ``lang/HLG.pt`` after stage 4), so it works wherever it is copied.

Audio is read with soundfile (wav, flac, ogg, ...), mixed down to mono (channel mean) and
resampled to the model's rate when it differs; features are the fbank the model was trained on.
Each file is decoded on its own, so its transcript does not depend on the other files given.
A file longer than ``--chunk-seconds`` (30) is read and decoded a chunk at a time, each chunk
ending at the quietest 10 ms of its last 5 s, so memory does not grow with the file's length;
its lattice is the chunks' lattices joined in order.
A file that cannot be read (missing, a directory, corrupt, shorter than 70 ms) is reported by name and
skipped; the others are still transcribed, and the exit status is 1 at the end.

``--lattice-out DIR`` writes each file's lattice as ``DIR/<name>.pt`` (``torch.save(lattice.as_dict())``,
load with ``k2.Fsa.from_dict``; arcs carry ``frame_idx``) and ``DIR/lattices.scp`` (``<name> <audio file>``);
``<name>`` is the file's stem with whitespace replaced by ``_`` (a valid scp key), numbered when names repeat.
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

from rlhf.bundle import MODEL_LANG_DIR, FeatureConfig
from rlhf.cli import HelpFormatter, add_dataclass_options, add_device_option, dataclass_from_args, run_step
from rlhf.decode import METHODS, LatticeConfig
from rlhf.log import setup_logging
from rlhf.model import pick_device
from rlhf.transcribe import (CHUNK_SECONDS, CHUNK_TAIL_SECONDS, CUT_WINDOW_SECONDS, Transcriber,
                             load_model_for_decoding, pick_method, transcribe_files)


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("audio", type=Path, nargs="+", help="audio files (any format soundfile reads)")
    p.add_argument("--model-dir", type=Path, required=True,
                   help="a trained, bundled model directory, e.g. exp/ctc_tdnn")
    p.add_argument("--epoch", type=int, default=None,
                   help="use the model of epoch-N.pt (default: the epoch training selected, selected.json, else the "
                        "last) ...")
    p.add_argument("--avg", type=int, default=None,
                   help="... averaged (parameter by parameter) with the K-1 epochs before it (default: the --avg "
                        "training judged with, else 1)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a checkpoint file (a fine-tuned best.pt, say) instead of --epoch/--avg")
    p.add_argument("--lang-dir", type=Path, default=None, help="the lang files (default: <model-dir>/lang)")
    p.add_argument("--method", default="auto", choices=["auto", *METHODS],
                   help="decoding method; auto: hlg-1best when the lang files include HLG.pt, else ctc-1best")
    p.add_argument("--lattice-out", type=Path, default=None,
                   help="write each file's lattice into this directory (lattice methods only)")
    p.add_argument("--chunk-seconds", type=float, default=CHUNK_SECONDS,
                   help=f"decode longer files in chunks of at most this many seconds (the last up to "
                        f"{CHUNK_TAIL_SECONDS:g} s longer), each cut at the quietest 10 ms of its last "
                        f"{CUT_WINDOW_SECONDS:g} s (last quarter, for chunks under {4 * CUT_WINDOW_SECONDS:g} s). Memory is then that of one chunk's lattice search, whatever "
                        f"the file's length: the search takes about 1 GB per minute of audio at the default beams "
                        f"and --max-active-states, so with 30 s chunks a small model peaked at 1.2 GB on 10 min of "
                        f"silence and 1.9 GB on 60 min of noise (10.5 GB on 10 min decoded at once; RESULTS.md). "
                        f"0: each file at once, memory growing with its length")
    add_device_option(p)
    add_dataclass_options(p, LatticeConfig())
    p.add_argument("--log-dir", type=Path, default=None,
                   help="also write the log to a file in this directory (default: none, stderr only)")
    args = p.parse_args(argv)
    setup_logging(args.log_dir, "transcribe")
    config = dataclass_from_args(LatticeConfig, args)

    def step() -> None:
        if not args.model_dir.is_dir():
            raise FileNotFoundError(f"--model-dir {args.model_dir} is not a directory")
        lang_dir = args.lang_dir or args.model_dir / MODEL_LANG_DIR
        if not (lang_dir / "tokens.txt").is_file():
            raise FileNotFoundError(f"{lang_dir / 'tokens.txt'} not found: copy the lang files into the model "
                                    f"directory with steps/bundle_model.sh <lang-dir> <fbank-dir> {args.model_dir}, "
                                    f"or give --lang-dir")
        method = pick_method(args.method, lang_dir)
        if args.lattice_out is not None and method == "ctc-greedy":
            raise ValueError("--lattice-out needs a lattice method (ctc-1best or hlg-1best), not ctc-greedy")
        model = load_model_for_decoding(args.model_dir, args.checkpoint, args.epoch, args.avg)
        transcriber = Transcriber(model, lang_dir, FeatureConfig.load(args.model_dir), method, config,
                                  pick_device(args.device), args.chunk_seconds)
        if transcribe_files(transcriber, args.audio, args.lattice_out):
            sys.exit(1)

    run_step(step)


if __name__ == "__main__":
    main()
