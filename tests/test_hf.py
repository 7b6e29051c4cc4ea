"""Hessian-free optimizer: curvature products, CG, and the HF step's damping, backtracking and safety rules."""

import io
import logging
import math

import functorch
import pytest
import torch

from rlhf import hf
from rlhf.hf import (FisherPreconditioner, HessianFree, HessianFreeConfig, HessianFreeError, conjugate_gradient,
                     ggn_vector_product, module_ggn_product)

DTYPE = torch.float64


def spd_matrix(n: int, low: float, high: float, seed: int) -> torch.Tensor:
    """A random SPD matrix with log-spaced eigenvalues in [low, high]."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DTYPE))
    eig = torch.logspace(math.log10(low), math.log10(high), n, dtype=DTYPE)
    return (q * eig) @ q.T


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def flat_jacobian(fn, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The Jacobian of fn(*params) as an (outputs x parameters) matrix."""
    jac = torch.autograd.functional.jacobian(fn, params)
    rows = fn(*params).numel()
    return torch.cat([j.reshape(rows, -1) for j in jac], dim=1)


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vec: torch.Tensor, like) -> list[torch.Tensor]:
    out, offset = [], 0
    for p in like:
        out.append(vec[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
    return out


def softmax_hessian(log_probs: torch.Tensor):
    """The Hessian of cross-entropy wrt logits, diag(p) - p p^T per row, as a callable on the last axis."""
    p = log_probs.detach().exp()
    return lambda t: p * t - p * (p * t).sum(-1, keepdim=True)


# --------------------------------------------------------------------------------------------
# Curvature-vector products
# --------------------------------------------------------------------------------------------

def tiny_network():
    params = (randn(4, 3, seed=1), randn(4, seed=2), randn(2, 4, seed=3))
    x = randn(5, 3, seed=4)

    def fn(w1, b1, w2):
        return torch.tanh(x @ w1.T + b1) @ w2.T

    return fn, params


@pytest.mark.parametrize("forward_mode", [True, False])
def test_ggn_matches_explicit_product(forward_mode):
    fn, params = tiny_network()
    m = fn(*params).numel()
    root = randn(m, m, seed=5)
    h = root @ root.T
    vec = tuple(randn(*p.shape, seed=10 + i) for i, p in enumerate(params))
    gv = ggn_vector_product(fn, params, vec, lambda t: (h @ t.reshape(-1)).reshape(t.shape),
                            forward_mode=forward_mode)
    jac = flat_jacobian(fn, params)
    expected = jac.T @ h @ jac @ flat(vec)
    assert [g.shape for g in gv] == [p.shape for p in params]
    torch.testing.assert_close(flat(gv), expected, rtol=0, atol=1e-10)
    for seed in range(10):
        v = tuple(randn(*p.shape, seed=100 * seed + i) for i, p in enumerate(params))
        gv = ggn_vector_product(fn, params, v, lambda t: (h @ t.reshape(-1)).reshape(t.shape),
                                forward_mode=forward_mode)
        assert torch.dot(flat(v), flat(gv)).item() >= 0


def test_ggn_falls_back_to_double_backward_when_forward_mode_fails(monkeypatch, caplog):
    fn, params = tiny_network()
    vec = tuple(randn(*p.shape, seed=20 + i) for i, p in enumerate(params))
    identity = lambda t: 2.0 * t  # noqa: E731
    expected = ggn_vector_product(fn, params, vec, identity)

    def broken_jvp(*args, **kwargs):
        raise NotImplementedError("no forward AD formula for this op")

    monkeypatch.setattr(functorch, "jvp", broken_jvp)
    monkeypatch.setattr(hf, "_warned_double_backward", False)
    with caplog.at_level(logging.WARNING, logger="rlhf.hf"):
        first = ggn_vector_product(fn, params, vec, identity)
        second = ggn_vector_product(fn, params, vec, identity)
    torch.testing.assert_close(flat(first), flat(expected), rtol=0, atol=1e-10)
    assert torch.equal(flat(first), flat(second))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "double-backward" in warnings[0].getMessage()


class TupleOutput(torch.nn.Module):
    """A small conv net returning (log-probs, something else), to exercise ``output_fn``."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.Tanh(), torch.nn.LayerNorm(4),
                                       torch.nn.Linear(4, 5), torch.nn.LogSoftmax(dim=-1))

    def forward(self, x):
        out = self.net(x)
        return out, out.sum()


@pytest.mark.parametrize("forward_mode", [True, False])
def test_module_ggn_product_on_conv_layernorm_log_softmax(forward_mode, caplog):
    torch.manual_seed(0)
    module = TupleOutput().double()
    module.net[2].bias.requires_grad_(False)  # frozen parameters are left out
    x = randn(2, 2, 6, seed=30)
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    names, params = [n for n, _ in trainable], tuple(p.detach() for _, p in trainable)
    assert len(params) == len(list(module.parameters())) - 1
    log_probs = module(x)[0]
    curvature = softmax_hessian(log_probs)
    vec = [randn(*p.shape, seed=40 + i) for i, p in enumerate(params)]
    with caplog.at_level(logging.WARNING, logger="rlhf.hf"):
        gv = module_ggn_product(module, (x,), vec, curvature, output_fn=lambda out: out[0],
                                forward_mode=forward_mode)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # forward mode handled every op

    def fn(*ps):
        return torch.nn.utils.stateless.functional_call(module, dict(zip(names, ps)), (x,))[0]

    jac = flat_jacobian(fn, params)
    p = log_probs.detach().exp().reshape(-1, 5)
    h = torch.block_diag(*[torch.diag(row) - torch.outer(row, row) for row in p])
    torch.testing.assert_close(flat(gv), jac.T @ h @ jac @ flat(vec), rtol=0, atol=1e-10)
    assert torch.dot(flat(vec), flat(gv)).item() > 0
    assert all(p.grad is None for p in module.parameters())  # the module's own gradients are untouched


# --------------------------------------------------------------------------------------------
# Conjugate gradient
# --------------------------------------------------------------------------------------------

def test_cg_solves_spd_system_within_n_iterations():
    n = 20
    a, b = spd_matrix(n, 1.0, 10.0, seed=1), randn(n, seed=2)
    exact = torch.linalg.solve(a, b)
    result = conjugate_gradient(lambda v: a @ v, b, max_iters=100, tol=0.0, rtol_residual=1e-10)
    assert result.stop_reason == "residual" and result.num_iters <= n
    assert torch.linalg.norm(a @ result.x - b) <= 1e-10 * torch.linalg.norm(b)
    torch.testing.assert_close(result.x, exact, rtol=1e-9, atol=0)
    # phi tracked from the residual equals the quadratic at the returned x.
    phi = 0.5 * result.x @ a @ result.x - b @ result.x
    assert result.phi == pytest.approx(phi.item(), rel=1e-12)
    # Default settings (Martens' rule, numerically-zero residual) also finish within n iterations.
    default = conjugate_gradient(lambda v: a @ v, b, max_iters=100)
    assert default.stop_reason == "progress" and default.num_iters <= n
    optimum = -0.5 * (b @ exact).item()
    assert 0 <= (default.phi - optimum) / abs(optimum) < 1e-9  # Martens' rule measures progress in phi
    assert torch.linalg.norm(default.x - exact) <= 1e-4 * torch.linalg.norm(exact)
    # Ill-conditioned (1e3): finite precision needs more than n iterations, but it gets there.
    a = spd_matrix(n, 1.0, 1e3, seed=1)
    result = conjugate_gradient(lambda v: a @ v, b, max_iters=100, tol=0.0, rtol_residual=1e-10)
    assert result.stop_reason == "residual" and result.num_iters <= 2 * n
    assert torch.linalg.norm(a @ result.x - b) <= 1e-10 * torch.linalg.norm(b)


def test_cg_with_diagonal_preconditioner():
    n = 20
    scale = torch.logspace(-2, 2, n, dtype=DTYPE)
    a = scale[:, None] * spd_matrix(n, 1.0, 10.0, seed=3) * scale[None, :]  # badly scaled, cond ~ 1e9
    b = randn(n, seed=4)
    exact = torch.linalg.solve(a, b)
    pre = conjugate_gradient(lambda v: a @ v, b, precond=torch.diagonal(a).clone(), max_iters=100,
                             tol=0.0, rtol_residual=1e-10)
    plain = conjugate_gradient(lambda v: a @ v, b, max_iters=100, tol=0.0, rtol_residual=1e-10)
    assert pre.stop_reason == "residual" and pre.num_iters <= n
    torch.testing.assert_close(pre.x, exact, rtol=1e-6, atol=0)
    assert pre.num_iters < plain.num_iters


@pytest.mark.parametrize("num_rows,exponent", [(3, 1.0), (3, 0.75), (12, 0.75)])
def test_fisher_preconditioner_applies_the_inverse_of_the_damped_fisher_power(num_rows, exponent):
    rows = randn(num_rows, 8, seed=num_rows)
    rows[-1] = rows[0]  # a repeated example: the Gram matrix is singular
    damping, v = 0.3, randn(8, seed=20)
    fisher = rows.T @ rows / num_rows
    eigenvalues, vectors = torch.linalg.eigh(fisher + damping * torch.eye(8, dtype=DTYPE))
    dense = (vectors * eigenvalues ** -exponent) @ vectors.T
    precond = FisherPreconditioner(rows, damping, exponent)
    torch.testing.assert_close(precond(v), dense @ v, rtol=1e-9, atol=1e-12)
    assert precond.rank == min(num_rows - 1, 8)
    with pytest.raises(ValueError, match="positive damping"):
        FisherPreconditioner(rows, 0.0)
    with pytest.raises(ValueError, match="rows"):
        FisherPreconditioner(rows[0], 1.0)


def test_cg_with_the_fisher_preconditioner():
    # A system whose matrix is the damped Fisher itself is solved in one preconditioned step;
    # a nearby one (the Fisher plus a small SPD part) in fewer steps than without it.
    rows = randn(5, 30, seed=7) * torch.logspace(-2, 2, 30, dtype=DTYPE)
    b = randn(30, seed=8)
    a = rows.T @ rows / 5 + 1e-3 * torch.eye(30, dtype=DTYPE)
    precond = FisherPreconditioner(rows, 1e-3)
    exact = conjugate_gradient(lambda v: a @ v, b, precond=precond, max_iters=100, tol=0.0, rtol_residual=1e-8)
    assert exact.num_iters == 1
    torch.testing.assert_close(exact.x, torch.linalg.solve(a, b), rtol=1e-6, atol=0)
    near = a + spd_matrix(30, 1e-4, 1e-2, seed=9)
    pre = conjugate_gradient(lambda v: near @ v, b, precond=precond, max_iters=200, tol=0.0, rtol_residual=1e-8)
    plain = conjugate_gradient(lambda v: near @ v, b, max_iters=200, tol=0.0, rtol_residual=1e-8)
    assert pre.stop_reason == "residual" and pre.num_iters < plain.num_iters


def test_cg_saves_iterates_at_powers_of_1_3():
    n = 60
    a, b = spd_matrix(n, 1.0, 1e4, seed=5), randn(n, seed=6)
    result = conjugate_gradient(lambda v: a @ v, b, max_iters=40, tol=0.0)
    assert result.stop_reason == "max_iters" and result.num_iters == 40
    assert [i for i, _ in result.iterates] == [1, 2, 3, 4, 5, 7, 9, 11, 14, 18, 24, 31, 40]
    for i, x in result.iterates:
        assert torch.equal(x, conjugate_gradient(lambda v: a @ v, b, max_iters=i, tol=0.0).x)
    # The last iterate is saved even when it is not on the schedule.
    short = conjugate_gradient(lambda v: a @ v, b, max_iters=13, tol=0.0)
    assert [i for i, _ in short.iterates] == [1, 2, 3, 4, 5, 7, 9, 11, 13]


def test_cg_martens_relative_progress_rule():
    n = 300
    a, b = spd_matrix(n, 1.0, 1e5, seed=7), randn(n, seed=8)
    tol = 5e-4
    result = conjugate_gradient(lambda v: a @ v, b, max_iters=n, tol=tol)
    assert result.stop_reason == "progress"
    phis = result.phis
    assert all(later <= earlier + 1e-9 for earlier, later in zip(phis, phis[1:]))  # phi decreases

    def rule(i: int) -> bool:
        k = max(10, math.ceil(0.1 * i))
        return i > k and phis[i] < 0 and (phis[i] - phis[i - k]) / phis[i] < k * tol

    assert rule(result.num_iters)
    assert not any(rule(i) for i in range(1, result.num_iters))


def test_cg_warm_start_negative_curvature_and_nan():
    a, b = spd_matrix(8, 1.0, 10.0, seed=9), randn(8, seed=10)
    exact = torch.linalg.solve(a, b)
    warm = conjugate_gradient(lambda v: a @ v, b, x0=exact.clone())
    assert warm.num_iters <= 1
    torch.testing.assert_close(warm.x, exact, rtol=1e-12, atol=0)
    # A warm start worse than zero (phi(x0) > 0) is ignored.
    cold = conjugate_gradient(lambda v: a @ v, b)
    bad = conjugate_gradient(lambda v: a @ v, b, x0=-3 * exact)
    assert torch.equal(bad.x, cold.x)

    indefinite = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=DTYPE))
    result = conjugate_gradient(lambda v: indefinite @ v, torch.ones(3, dtype=DTYPE))
    assert result.negative_curvature and result.stop_reason == "negative_curvature"
    assert result.num_iters < 3

    with pytest.raises(HessianFreeError, match="curvature-vector product"):
        conjugate_gradient(lambda v: v * float("nan"), b)


# --------------------------------------------------------------------------------------------
# The optimizer on small problems
# --------------------------------------------------------------------------------------------

class Quadratic:
    """f(x) = scale * (0.5 x^T A x - b^T x) with closures for HessianFree; heldout may be another function."""

    def __init__(self, n: int = 10, seed: int = 0, low: float = 1.0, high: float = 10.0):
        self.a, self.b = spd_matrix(n, low, high, seed=seed), randn(n, seed=seed + 1)
        self.x = torch.nn.Parameter(randn(n, seed=seed + 2))
        self.curvature_calls = 0

    def value(self, x: torch.Tensor) -> float:
        return (0.5 * x @ self.a @ x - self.b @ x).item()

    def gradient_fn(self):
        x = self.x.detach()
        return self.value(x), self.a @ x - self.b, None

    def curvature_fn(self, v):
        self.curvature_calls += 1
        return self.a @ v

    def heldout_fn(self):
        return self.value(self.x.detach())


def test_one_step_solves_a_convex_quadratic():
    problem = Quadratic(n=10)
    opt = HessianFree([problem.x], HessianFreeConfig(init_damping=1e-12, min_damping=1e-14))
    info = opt.step(problem.gradient_fn, problem.curvature_fn, problem.heldout_fn)
    optimum = torch.linalg.solve(problem.a, problem.b)
    assert info.accepted and info.step_size == 1.0 and info.cg_iters <= 10
    assert torch.linalg.norm(problem.x.detach() - optimum) <= 1e-8 * torch.linalg.norm(optimum)
    assert info.heldout_after == pytest.approx(problem.value(optimum), rel=1e-12)
    assert info.rho == pytest.approx(1.0, abs=1e-8)


def test_rosenbrock_least_squares_converges():
    xy = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=DTYPE))

    def residual_and_jacobian():
        x, y = xy.detach()
        r = torch.stack([10 * (y - x * x), 1 - x])
        jac = torch.tensor([[-20 * x.item(), 10.0], [-1.0, 0.0]], dtype=DTYPE)
        return r, jac

    def gradient_fn():
        r, jac = residual_and_jacobian()
        return 0.5 * (r @ r).item(), jac.T @ r, None

    def curvature_fn(v):
        _, jac = residual_and_jacobian()
        return jac.T @ (jac @ v)

    def heldout_fn():
        r, _ = residual_and_jacobian()
        return 0.5 * (r @ r).item()

    opt = HessianFree([xy])
    target = torch.tensor([1.0, 1.0], dtype=DTYPE)
    for steps in range(1, 61):
        info = opt.step(gradient_fn, curvature_fn, heldout_fn)
        assert info.heldout_after <= info.heldout_before
        if torch.linalg.norm(xy.detach() - target) < 1e-6:
            break
    assert torch.linalg.norm(xy.detach() - target) < 1e-6, f"not converged after {steps} steps: {xy}"


def test_cg_backtracking_picks_the_best_saved_iterate_walking_back_from_the_last():
    problem = Quadratic(n=40, seed=11, high=1e4)
    theta = problem.x.detach().clone()
    config = HessianFreeConfig(init_damping=1e-3)
    g = problem.gradient_fn()[1]
    cg = conjugate_gradient(lambda v: problem.a @ v + 1e-3 * v, -g, max_iters=config.cg_max_iters, tol=config.cg_tol)
    saved = dict(cg.iterates)
    assert len(saved) >= 8
    target = theta + saved[5]  # held-out prefers CG iterate 5, well before the last
    scale = -(g @ saved[5]).item() / (saved[5] @ saved[5]).item()  # so that the Armijo test can pass
    seen = []

    def heldout():
        x = problem.x.detach().clone()
        seen.append(x)
        return scale * ((x - target) ** 2).sum().item()

    info = HessianFree([problem.x], config).step(problem.gradient_fn, problem.curvature_fn, heldout)
    assert info.cg_iters == cg.num_iters and info.backtrack_iter == 5 and info.accepted
    assert info.cg_phis == cg.phis and len(info.cg_phis) == info.cg_iters + 1  # recorded for the progress log
    # Evaluated: theta, then saved iterates from the last backwards down to 5, then 4 (worse), then stop.
    order = sorted(saved, reverse=True)
    expected = [theta] + [theta + saved[i] for i in order[:order.index(4) + 1]]
    assert len(seen) >= len(expected) and all(torch.equal(a, b) for a, b in zip(seen, expected))
    assert torch.equal(problem.x.detach(), theta + info.step_size * saved[5])


def test_damping_rises_after_a_rejected_step():
    problem = Quadratic(seed=3)
    before = problem.x.detach().clone()
    opt = HessianFree([problem.x], HessianFreeConfig(init_damping=2.0))
    anti = lambda: -problem.heldout_fn()  # noqa: E731  held-out data disagrees with the gradient batch
    info = opt.step(problem.gradient_fn, problem.curvature_fn, anti)
    assert not info.accepted and info.step_size == 0.0 and info.step_norm == 0.0
    assert torch.equal(problem.x.detach(), before)
    assert info.heldout_after == info.heldout_before
    assert info.damping == 2.0 and info.next_damping == 2.0 * 1.5 == opt.damping
    assert opt.step(problem.gradient_fn, problem.curvature_fn, anti).damping == 3.0

    # A rejected step raises the damping even when rho looks good: with armijo_c = 0.9 no step size
    # passes the Armijo test, though the held-out objective falls by half the predicted amount.
    problem = Quadratic(seed=12)
    opt = HessianFree([problem.x], HessianFreeConfig(init_damping=1.0, armijo_c=0.9))
    info = opt.step(problem.gradient_fn, problem.curvature_fn, lambda: 0.5 * problem.heldout_fn())
    assert not info.accepted and info.rho == pytest.approx(0.5, abs=1e-9) and info.next_damping == 1.5


def test_damping_falls_when_the_model_is_exact_and_stays_in_between():
    problem = Quadratic(seed=4)
    opt = HessianFree([problem.x], HessianFreeConfig(init_damping=1.0))
    info = opt.step(problem.gradient_fn, problem.curvature_fn, problem.heldout_fn)
    assert info.accepted and info.rho == pytest.approx(1.0, abs=1e-9)
    assert info.next_damping == 1.0 * (2 / 3)

    # Held-out improves by half what the model predicts: rho = 1/2, damping unchanged.
    problem = Quadratic(seed=5)
    opt = HessianFree([problem.x], HessianFreeConfig(init_damping=1.0))
    info = opt.step(problem.gradient_fn, problem.curvature_fn, lambda: 0.5 * problem.heldout_fn())
    assert info.accepted and info.rho == pytest.approx(0.5, abs=1e-9)
    assert info.next_damping == 1.0

    # Damping never goes below min_damping.
    problem = Quadratic(seed=6)
    opt = HessianFree([problem.x], HessianFreeConfig(init_damping=1e-6, min_damping=1e-6))
    assert opt.step(problem.gradient_fn, problem.curvature_fn, problem.heldout_fn).next_damping == 1e-6


def test_rho_on_the_gradient_batch_ignores_a_heldout_set_the_model_does_not_fit():
    # Held-out improves by a tenth of the prediction: rho on held-out data raises the damping,
    # rho on the gradient's own batch (the quadratic is exact there) lowers it.
    def run(rho_data):
        problem = Quadratic(seed=5)
        opt = HessianFree([problem.x], HessianFreeConfig(init_damping=1.0, rho_data=rho_data))
        return opt.step(problem.gradient_fn, problem.curvature_fn, lambda: 0.1 * problem.heldout_fn(),
                        problem.heldout_fn)

    on_heldout, on_gradient = run("heldout"), run("gradient")
    assert on_heldout.rho == pytest.approx(0.1, abs=1e-9) and on_heldout.next_damping == 1.5
    assert on_gradient.rho == pytest.approx(1.0, abs=1e-9) and on_gradient.next_damping == 1.0 * (2 / 3)
    assert on_heldout.accepted and on_gradient.accepted  # held-out still decides what is kept
    with pytest.raises(ValueError, match="gradient_value_fn"):
        HessianFree([Quadratic().x], HessianFreeConfig(rho_data="gradient")).step(
            Quadratic().gradient_fn, Quadratic().curvature_fn, Quadratic().heldout_fn)
    with pytest.raises(ValueError, match="--hf-rho-data"):
        HessianFreeConfig(rho_data="curvature")


def test_a_saved_direction_of_another_size_is_not_a_warm_start():
    problem = Quadratic(seed=13)
    opt = HessianFree([problem.x], HessianFreeConfig(preconditioner="none"))
    opt.load_state_dict({"damping": 1.0, "iteration": 7, "direction": torch.ones(3, dtype=DTYPE)})
    info = opt.step(problem.gradient_fn, problem.curvature_fn, problem.heldout_fn)
    assert info.iteration == 8 and info.accepted


def test_the_preconditioner_option_and_what_it_needs():
    problem = Quadratic(seed=21)
    rows = randn(4, 10, seed=22)

    def with_rows():
        value, g, _ = problem.gradient_fn()
        return value, g, rows

    def with_squares():
        value, g, _ = problem.gradient_fn()
        return value, g, rows.pow(2).mean(0)

    diagonal, from_rows = (HessianFree([problem.x])._gradient(fn, problem.x.detach())[2]
                           for fn in (with_squares, with_rows))
    torch.testing.assert_close(from_rows, diagonal)  # the diagonal also takes the rows themselves
    fisher = HessianFree([problem.x], HessianFreeConfig(preconditioner="fisher"))
    assert isinstance(fisher._gradient(with_rows, problem.x.detach())[2], FisherPreconditioner)
    assert fisher.step(with_rows, problem.curvature_fn, problem.heldout_fn).accepted
    for fn in (problem.gradient_fn, with_squares):
        with pytest.raises(ValueError, match="--hf-preconditioner fisher needs per-example gradients"):
            fisher.step(fn, problem.curvature_fn, problem.heldout_fn)
    assert HessianFree([problem.x], HessianFreeConfig(preconditioner="none"))._gradient(
        with_rows, problem.x.detach())[2] is None
    with pytest.raises(ValueError, match="--hf-preconditioner"):
        HessianFreeConfig(preconditioner="kfac")


def test_a_step_that_increases_heldout_is_never_kept():
    problem = Quadratic(seed=7)
    other = Quadratic(seed=8)  # held-out objective: a different quadratic, evaluated at problem.x
    heldout = lambda: other.value(problem.x.detach())  # noqa: E731
    opt = HessianFree([problem.x])
    outcomes = set()
    for _ in range(10):
        before = problem.x.detach().clone()
        info = opt.step(problem.gradient_fn, problem.curvature_fn, heldout)
        outcomes.add(info.accepted)
        assert info.heldout_after <= info.heldout_before
        assert heldout() == info.heldout_after  # the parameters are those the info describes
        if not info.accepted:
            assert torch.equal(problem.x.detach(), before)
    assert outcomes == {True, False}

    # With armijo_c < 0 the Armijo test alone would accept an increase; the explicit guard must not.
    problem = Quadratic(seed=9)
    before = problem.x.detach().clone()
    opt = HessianFree([problem.x], HessianFreeConfig(armijo_c=-10.0))
    info = opt.step(problem.gradient_fn, problem.curvature_fn, lambda: -problem.heldout_fn())
    assert not info.accepted and torch.equal(problem.x.detach(), before)


def test_non_finite_values_raise_and_leave_parameters_untouched():
    problem = Quadratic(seed=10)
    opt = HessianFree([problem.x])
    opt.step(problem.gradient_fn, problem.curvature_fn, problem.heldout_fn)  # parameters move first
    good = problem.x.detach().clone()
    state = opt.state_dict()

    def nan_gradient():
        loss, g, _ = problem.gradient_fn()
        g = g.clone()
        g[3] = float("nan")
        return loss, g, None

    with pytest.raises(HessianFreeError, match="gradient") as error:
        opt.step(nan_gradient, problem.curvature_fn, problem.heldout_fn)
    assert "last good values" in str(error.value)
    assert torch.equal(problem.x.detach(), good)

    calls = []

    def nan_curvature(v):
        calls.append(1)
        return problem.curvature_fn(v) * (float("nan") if len(calls) == 3 else 1.0)

    with pytest.raises(HessianFreeError, match="curvature-vector product"):
        opt.step(problem.gradient_fn, nan_curvature, problem.heldout_fn)
    assert torch.equal(problem.x.detach(), good)

    # Non-finite held-out objective at a candidate, after the parameters were moved.
    heldout = lambda: problem.heldout_fn() if torch.equal(problem.x.detach(), good) else math.inf  # noqa: E731
    with pytest.raises(HessianFreeError, match="held-out objective"):
        opt.step(problem.gradient_fn, problem.curvature_fn, heldout)
    assert torch.equal(problem.x.detach(), good)
    assert opt.state_dict()["damping"] == state["damping"] and opt.iteration == state["iteration"]


# --------------------------------------------------------------------------------------------
# Determinism, resuming, logging: a small tanh network trained by least squares
# --------------------------------------------------------------------------------------------

class Regression:
    """A 3-8-2 tanh network; gradient and curvature batches differ, held-out is a third batch."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        x = randn(48, 3, seed=50)
        y = torch.sin(x @ randn(3, 2, seed=51))
        self.grad_batch, self.curv_batch, self.heldout_batch = (x[:16], y[:16]), (x[16:32], y[16:32]), (x[32:], y[32:])
        self.params = [p for p in model.parameters()]

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        return 0.5 * ((self.model(x) - y) ** 2).sum() / len(x)

    def gradient_fn(self):
        loss = self.loss(self.grad_batch)
        g = flat(torch.autograd.grad(loss, self.params))
        x, y = self.grad_batch
        per_example = [flat(torch.autograd.grad(self.loss((x[i:i + 1], y[i:i + 1])), self.params)) / len(x)
                       for i in range(len(x))]
        return loss.item(), g, torch.stack(per_example).pow(2).sum(0)

    def curvature_fn(self, v):
        x, _ = self.curv_batch
        gv = module_ggn_product(self.model, (x,), unflat(v, self.params), lambda t: t / len(x))
        return flat(gv)

    def heldout_fn(self):
        with torch.no_grad():
            return self.loss(self.heldout_batch).item()


def make_model() -> torch.nn.Module:
    torch.manual_seed(123)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()


def run_steps(problem: Regression, opt: HessianFree, steps: int):
    return [opt.step(problem.gradient_fn, problem.curvature_fn, problem.heldout_fn) for _ in range(steps)]


def strip_time(infos):
    return [{k: v for k, v in vars(info).items() if k != "seconds"} for info in infos]


def test_determinism_and_bit_identical_resume():
    first, second = Regression(make_model()), Regression(make_model())
    infos = run_steps(first, HessianFree(first.params), 5)
    infos2 = run_steps(second, HessianFree(second.params), 5)
    assert infos[-1].heldout_after < infos[0].heldout_before  # it actually trains
    assert any(info.cg_iters > 1 for info in infos)
    assert all(torch.equal(a, b) for a, b in zip(first.params, second.params))
    assert strip_time(infos) == strip_time(infos2)

    resumed = Regression(make_model())
    opt = HessianFree(resumed.params)
    head = run_steps(resumed, opt, 2)
    buffer = io.BytesIO()
    torch.save({"model": resumed.model.state_dict(), "hf": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    restarted = Regression(make_model())
    restarted.model.load_state_dict(saved["model"])
    opt2 = HessianFree(restarted.params)
    opt2.load_state_dict(saved["hf"])
    tail = run_steps(restarted, opt2, 3)
    assert all(torch.equal(a, b) for a, b in zip(first.params, restarted.params))
    assert strip_time(head + tail) == strip_time(infos)
    assert opt2.iteration == 5
