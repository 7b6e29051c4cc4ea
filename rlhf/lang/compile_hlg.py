"""``<lang_dir>/HLG.pt``, compiled once per lang dir and G (the composition itself: rlhf.graphs).

Other graphs of the same lang dir (stage 5's lattices from a weaker LM) go beside it under their own
names, each with its own completion marker.
"""

import logging
from pathlib import Path
from typing import Optional

from rlhf.graphs import compile_hlg, save_graph
from rlhf.stage import StageMarker

HLG_NAME = "HLG.pt"


def compile_hlg_step(lang_dir: Path, g_fst_txt: Path, modified_ctc_topo: bool = False, force: bool = False,
                     out: Optional[Path] = None) -> None:
    """Write ``out`` (default ``lang_dir/HLG.pt``) unless it exists and was made from the same files and options."""
    lang_dir, g_fst_txt = Path(lang_dir), Path(g_fst_txt)
    out = Path(out) if out is not None else lang_dir / HLG_NAME
    inputs = [lang_dir / "tokens.txt", lang_dir / "words.txt", lang_dir / "lexicon.txt", g_fst_txt]
    name = "compile_hlg" if out == lang_dir / HLG_NAME else f"compile_hlg_{out.stem}"
    marker = StageMarker(out.parent, name, {"modified_ctc_topo": modified_ctc_topo}, inputs, outputs=[out])
    # The marker names the graph as its output: a deleted graph is redone even when the marker is there.
    if marker.skip_if_complete(force):
        return
    marker.invalidate()
    HLG = compile_hlg(lang_dir, g_fst_txt, modified_ctc_topo=modified_ctc_topo)
    save_graph(HLG, out)
    marker.write()
    logging.info("Wrote %s: %d states, %d arcs", out, HLG.shape[0], HLG.num_arcs)
