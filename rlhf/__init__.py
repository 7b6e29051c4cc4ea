"""RL + Hessian-free sequence training for k2 CTC models: the recipe's Python package."""

__version__ = "0.1.0"
