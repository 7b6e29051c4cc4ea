"""Compile the CTC decoding graph HLG = H o det(L o G) of a lang dir and a word n-gram G (steps/compile_hlg.sh).

Output::

    <lang_dir>/HLG.pt    torch.save(HLG.as_dict()); load with rlhf.graphs.load_graph
                         labels: token ids (0 = blank); aux_labels: word ids (ragged)
                         (--out: another name, e.g. stage 5's <lang_dir>/HLG_1gram.pt)
"""

import argparse
from pathlib import Path
from typing import Optional

from rlhf.cli import HelpFormatter, add_stage_options, run_step, str2bool
from rlhf.lang.compile_hlg import compile_hlg_step
from rlhf.log import setup_logging


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("lang_dir", type=Path, help="made by steps/prepare_lang.sh, e.g. data/lang_bpe_200")
    p.add_argument("g_fst_txt", type=Path, help="made by steps/train_lm.sh, e.g. data/lm/G_3_gram.fst.txt")
    p.add_argument("--modified-ctc-topo", type=str2bool, default=False,
                   help="H without the mandatory blank between repeated tokens, k2's modified CTC topology "
                        "(true/false)")
    p.add_argument("--out", type=Path, default=None,
                   help="the graph file to write (default: <lang_dir>/HLG.pt, the one stages 4 and 7 decode with)")
    add_stage_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir, "compile_hlg")
    run_step(lambda: compile_hlg_step(args.lang_dir, args.g_fst_txt, args.modified_ctc_topo, args.force,
                                      args.out))


if __name__ == "__main__":
    main()
