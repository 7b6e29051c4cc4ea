"""The programs that the recipes' steps run, one per step and named like it.

``steps/<name>.sh`` and ``local/<name>.sh`` run ``python -m rlhf.bin.<name>``. Each program
parses its options and calls the library (the rest of the ``rlhf`` package), which does the work.
"""
