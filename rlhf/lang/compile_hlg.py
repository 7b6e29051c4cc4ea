"""``<lang_dir>/HLG.pt``, compiled once per lang dir and G (the composition itself: rlhf.graphs).
"""

import logging
from pathlib import Path

from rlhf.graphs import compile_hlg, save_graph
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
