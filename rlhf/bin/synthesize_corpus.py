"""Synthesize the embedded default corpus with eSpeak NG voices (local/synthesize_corpus.sh, stage 0).

Writes a corpus directory (Kaldi-like, one folder per split)::

    <corpus-dir>/speakers.tsv              speaker, voice, rate, pitch, range, split
    <corpus-dir>/<split>/text              <utt-id> <transcript>
    <corpus-dir>/<split>/utt2spk           <utt-id> <speaker>
    <corpus-dir>/<split>/wav.scp           <utt-id> <path relative to the corpus dir>
    <corpus-dir>/<split>/conditions.tsv    per utterance: SNR, noise colour, RT60
    <corpus-dir>/<split>/wav/<spk>/<utt-id>.wav   16 kHz, 16-bit PCM

Deterministic: every utterance's text, voice and acoustic conditions come from the
seed alone, and every utterance is synthesized in a freshly forked process because
eSpeak NG carries state from one sentence to the next. Same seed, same bytes.
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import HelpFormatter, add_stage_options, run_step
from rlhf.corpus.synthesize import CorpusConfig, synthesize_corpus
from rlhf.log import setup_logging
from rlhf.manifests import SPLITS


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("corpus_dir", type=Path, help="where to write the corpus, e.g. download/synth")
    defaults = CorpusConfig()
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="seed of every text, voice and acoustic condition: the same seed gives the same bytes")
    for split in SPLITS:
        p.add_argument(f"--num-{split}", type=int, default=defaults.num_utterances(split),
                       help=f"utterances of the {split} split")
        p.add_argument(f"--num-{split}-speakers", type=int, default=defaults.num_speakers[split],
                       help=f"voices of the {split} split (each split's voices are its own)")
    p.add_argument("--snr-min", type=float, default=defaults.snr_min,
                   help="lowest signal-to-noise ratio of the added noise, in dB")
    p.add_argument("--snr-max", type=float, default=defaults.snr_max,
                   help="highest signal-to-noise ratio of the added noise, in dB")
    p.add_argument("--reverb-prob", type=float, default=defaults.reverb_prob,
                   help="share of the utterances with room reverberation, in [0, 1]")
    p.add_argument("--rt60-min", type=float, default=defaults.rt60_min,
                   help="shortest reverberation time (RT60) of the synthetic rooms, in seconds")
    p.add_argument("--rt60-max", type=float, default=defaults.rt60_max,
                   help="longest reverberation time (RT60) of the synthetic rooms, in seconds")
    p.add_argument("--nj", type=int, default=1, help="parallel synthesis processes")
    add_stage_options(p)
    return p


def main(argv: Optional[list[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_dir, "synthesize")

    def step() -> None:
        config = CorpusConfig(
            seed=args.seed, num_train=args.num_train, num_dev=args.num_dev, num_test=args.num_test,
            num_speakers={s: getattr(args, f"num_{s}_speakers") for s in SPLITS},
            snr_min=args.snr_min, snr_max=args.snr_max, reverb_prob=args.reverb_prob,
            rt60_min=args.rt60_min, rt60_max=args.rt60_max,
        )
        synthesize_corpus(config, args.corpus_dir, num_jobs=args.nj, force=args.force)

    run_step(step)


if __name__ == "__main__":
    main()
