"""k2's internal forward, backward and total scores of an FsaVec, in one place.

``Fsa._get_forward_scores``, ``_get_backward_scores`` and ``_get_tot_scores`` are k2's own
non-differentiable versions ("for use by internal k2 code"). We use them rather than the public
``get_*_scores`` because those are autograd functions that recompute on every call, while the
internal ones cache their result on the Fsa, so forward, backward and total scores share one
pass; and the gradients we need come from our own expectation-semiring sweeps
(rlhf.rl.objective), not from autograd through k2. Pinned to k2 1.23.4 (tools/requirements-k2.txt);
tests/test_k2_private.py checks them against the public functions, so an upgrade that changes
them fails there.
"""

import k2
import torch


def forward_scores(fsas: k2.Fsa, log_semiring: bool) -> torch.Tensor:
    """[num_states] float64: the score of the paths from the start state to each state (log-sum or max)."""
    return fsas._get_forward_scores(use_double_scores=True, log_semiring=log_semiring)


def backward_scores(fsas: k2.Fsa, log_semiring: bool) -> torch.Tensor:
    """[num_states] float64: the score of the paths from each state to the final state (log-sum or max)."""
    return fsas._get_backward_scores(use_double_scores=True, log_semiring=log_semiring)


def total_scores(fsas: k2.Fsa, log_semiring: bool) -> torch.Tensor:
    """[num_fsas] float64: the score of the paths from start to final state of each FSA (log-sum or max)."""
    return fsas._get_tot_scores(use_double_scores=True, log_semiring=log_semiring)
