"""Compile the CTC decoding graph HLG = H o det(L o G) of a lang dir and a word n-gram G.

Output::

    <lang_dir>/HLG.pt    torch.save(HLG.as_dict()); load with rlhf.graphs.load_graph
                         labels: token ids (0 = blank); aux_labels: word ids (ragged)
"""

import argparse
import logging
from pathlib import Path
from typing import Optional

from rlhf.cli import add_stage_options, run_step, str2bool
from rlhf.graphs import compile_hlg, save_graph
from rlhf.log import setup_logging
from rlhf.stage import StageMarker

HLG_NAME = "HLG.pt"


def compile_hlg_step(lang_dir: Path, g_fst_txt: Path, modified_ctc_topo: bool = False, force: bool = False) -> None:
    """Write ``lang_dir/HLG.pt`` unless it exists and was made from the same files and options."""
    lang_dir, g_fst_txt = Path(lang_dir), Path(g_fst_txt)
    inputs = [lang_dir / "tokens.txt", lang_dir / "words.txt", lang_dir / "lexicon.txt", g_fst_txt]
    marker = StageMarker(lang_dir, "compile_hlg", {"modified_ctc_topo": modified_ctc_topo}, inputs)
    out = lang_dir / HLG_NAME
    # A deleted HLG.pt is redone even when the marker is still there.
    if out.is_file() and marker.skip_if_complete(force):
        return
    marker.invalidate()
    HLG = compile_hlg(lang_dir, g_fst_txt, modified_ctc_topo=modified_ctc_topo)
    save_graph(HLG, out)
    marker.write()
    logging.info("Wrote %s: %d states, %d arcs", out, HLG.shape[0], HLG.num_arcs)


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lang_dir", type=Path, help="made by rlhf-prepare-lang, e.g. data/lang_bpe_200")
    p.add_argument("g_fst_txt", type=Path, help="made by rlhf-train-lm, e.g. data/lm/G_3_gram.fst.txt")
    p.add_argument("--modified-ctc-topo", type=str2bool, default=False,
                   help="H without the mandatory blank between repeated tokens (true/false; default false)")
    add_stage_options(p)
    args = p.parse_args(argv)
    setup_logging(args.log_dir, "compile_hlg")
    run_step(lambda: compile_hlg_step(args.lang_dir, args.g_fst_txt, args.modified_ctc_topo, args.force))


if __name__ == "__main__":
    main()
