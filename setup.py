from setuptools import find_packages, setup

setup(
    name="rlhf",
    version="0.1.0",
    description="Kaldi-style recipes: k2 CTC baseline, lattice Q-learning and Hessian-free fine-tuning",
    packages=find_packages(include=["rlhf", "rlhf.*"]),
    python_requires="==3.10.*",
    entry_points={
        "console_scripts": [
            "rlhf-synth-corpus=rlhf.corpus.synthesize:main",
            "rlhf-prepare-manifests=rlhf.corpus.prepare:main",
            "rlhf-prepare-lang=rlhf.lang.prepare_lang:main",
            "rlhf-train-lm=rlhf.lang.train_lm:main",
            "rlhf-compile-hlg=rlhf.lang.compile_hlg:main",
            "rlhf-compute-fbank=rlhf.features:main",
            "rlhf-train-ctc=rlhf.train:main",
            "rlhf-decode=rlhf.decode:main",
            "rlhf-make-lattices=rlhf.make_lattices:main",
            "rlhf-qlearn=rlhf.qlearn:main",
            "rlhf-finetune=rlhf.finetune:main",
            "rlhf-compare-finetune=rlhf.compare:main",
            "rlhf-bench-qlearning=rlhf.rl.bench:main",
            "rlhf-export-model=rlhf.export:main",
            "rlhf-transcribe=rlhf.transcribe:main",
        ]
    },
)
