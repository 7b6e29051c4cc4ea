"""rlhf.k2_private: k2's internal scores equal its public ones (a k2 upgrade that changes them fails here)."""

import k2
import pytest
import torch

from rlhf.k2_private import backward_scores, forward_scores, total_scores


@pytest.mark.parametrize("log_semiring", [True, False])
def test_internal_scores_equal_the_public_ones(log_semiring):
    fsa = k2.Fsa.from_str("""
        0 1 1 0.5
        0 1 2 -1.0
        0 2 3 0.25
        1 2 1 -0.5
        1 3 -1 0.0
        2 3 -1 1.0
        3
    """)
    fsas = k2.create_fsa_vec([fsa, fsa])
    for ours, public in ((forward_scores, fsas.get_forward_scores), (backward_scores, fsas.get_backward_scores),
                         (total_scores, fsas.get_tot_scores)):
        expected = public(use_double_scores=True, log_semiring=log_semiring)
        assert ours(fsas, log_semiring=log_semiring).dtype == torch.float64
        torch.testing.assert_close(ours(fsas, log_semiring=log_semiring), expected)
