#!/usr/bin/env python3
"""Download LibriSpeech's published 3-gram LM (OpenSLR resource 11) into ``<download-dir>``.

Only run when the recipe is given ``--lm published``; the default estimates an LM from the
training transcripts and downloads nothing. The download resumes where an interrupted one
stopped; a complete file is not downloaded again. Prints the file's path on stdout.
"""

import argparse
import logging
from pathlib import Path

from lhotse.utils import resumable_download

from rlhf.log import setup_logging

URL = "https://www.openslr.org/resources/11"
NAME = "3-gram.pruned.1e-7.arpa.gz"  # the LM icefall's LibriSpeech recipes decode with (HLG)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("download_dir", type=Path, help="e.g. download/lm")
    p.add_argument("--name", default=NAME, help=f"a file of {URL}")
    p.add_argument("--log-dir", type=Path, default=None, help="also write the log under this directory")
    args = p.parse_args()
    setup_logging(args.log_dir, "download_lm")
    target = args.download_dir / args.name
    if target.is_file():
        logging.info("%s is already downloaded", target)
    else:
        # Downloaded to <name>.part (resumed if there is one) and renamed when complete.
        partial = target.with_name(target.name + ".part")
        args.download_dir.mkdir(parents=True, exist_ok=True)
        logging.info("Downloading %s/%s to %s", URL, args.name, target)
        resumable_download(f"{URL}/{args.name}", filename=partial)
        partial.rename(target)
    print(target)


if __name__ == "__main__":
    main()
