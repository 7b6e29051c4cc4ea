from setuptools import find_packages, setup

setup(
    name="rlhf",
    version="0.1.0",
    description="Kaldi-style recipes: k2 CTC baseline, lattice Q-learning and Hessian-free fine-tuning",
    packages=find_packages(include=["rlhf", "rlhf.*"]),
    python_requires="==3.10.*",
    # The steps run their programs as `python -m rlhf.bin.<step>`; the one command users type is a script.
    entry_points={"console_scripts": ["rlhf-transcribe=rlhf.bin.transcribe:main"]},
)
