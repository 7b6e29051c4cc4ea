"""Hessian-free (truncated Newton) optimization (Martens 2010; Kingsbury et al. 2012; docs/finetuning.md).

Each step minimizes a local quadratic model of the objective around the parameters theta,
    q(d) = f(theta) + g^T d + 0.5 d^T (G + lambda I) d,
with the generalized Gauss-Newton matrix G (PSD) and Levenberg-Marquardt damping lambda.
The model is minimized by preconditioned conjugate gradient (CG) using only curvature-vector
products G v, so no parameters x parameters matrix is ever formed. CG's preconditioner is
Martens' diagonal or the empirical Fisher of per-example gradients (natural-gradient
preconditioning, as NGHF combines natural gradient with HF; Haider & Woodland 2018), applied
exactly through the examples' Gram matrix. CG is warm-started from the previous direction,
stopped by Martens' relative-progress rule, and a few of its iterates are kept so that "CG
backtracking" can pick the one that does best on held-out data. The held-out objective then
drives an Armijo line search, the reduction ratio rho (actual over predicted decrease) drives
the damping, and a step that would increase the held-out objective is never kept. Curvature
products come from ``ggn_vector_product``: J^T H_out J v with forward-mode AD for J v and
reverse mode for J^T.
"""

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import functorch
import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector
from torch.nn.utils.stateless import functional_call

logger = logging.getLogger(__name__)

GradientFn = Callable[[], tuple[float, Tensor, Optional[Tensor]]]
RHO_DATA = ("heldout", "gradient")
PRECONDITIONERS = ("diagonal", "fisher", "none")
CurvatureFn = Callable[[Tensor], Tensor]
HeldoutFn = Callable[[], float]


class HessianFreeError(RuntimeError):
    """A gradient, curvature product or objective was not finite; parameters were left at the last good values."""


def _fail(what: str) -> HessianFreeError:
    return HessianFreeError(f"{what} is not finite; the parameters were left at their last good values "
                            "(those at the start of the step)")


# --------------------------------------------------------------------------------------------
# Curvature-vector products
# --------------------------------------------------------------------------------------------

_warned_double_backward = False


def _jvp_double_backward(fn: Callable[..., Tensor], params: tuple[Tensor, ...],
                         vec: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    """(output, J v) by the "R-op" trick: J v = d/du [J^T u] v, a vjp of a vjp (reverse mode only)."""
    out = fn(*params)
    u = torch.zeros_like(out, requires_grad=True)
    jtu = torch.autograd.grad(out, params, u, create_graph=True, allow_unused=True)
    pairs = [(a, v) for a, v in zip(jtu, vec) if a is not None]
    jv = torch.autograd.grad([a for a, _ in pairs], u, [v for _, v in pairs], allow_unused=True)[0]
    return out, torch.zeros_like(out) if jv is None else jv


def ggn_vector_product(fn: Callable[..., Tensor], params: tuple[Tensor, ...], vec: tuple[Tensor, ...],
                       output_curvature: Callable[[Tensor], Tensor], *,
                       forward_mode: bool = True) -> tuple[Tensor, ...]:
    """Generalized Gauss-Newton product G v = J^T H_out J v of ``fn(*params)`` (one tensor).

    J v comes from forward mode (``functorch.jvp``), J^T from one reverse pass through the same
    graph. If forward mode is unavailable for some op (or ``forward_mode=False``) the double-backward
    R-op trick is used instead, with one warning. ``output_curvature`` applies H_out (PSD) to a
    tensor shaped like the output; H_out is treated as a constant.
    """
    global _warned_double_backward
    params = tuple(p.detach().requires_grad_(True) for p in params)
    vec = tuple(v.detach().to(p) for v, p in zip(vec, params))
    with torch.enable_grad():
        out = jv = None
        if forward_mode:
            try:
                out, jv = functorch.jvp(fn, params, vec)
            except (NotImplementedError, RuntimeError) as error:
                if not _warned_double_backward:
                    logger.warning("forward-mode AD failed (%s); using the double-backward R-op for J v", error)
                    _warned_double_backward = True
        if out is None:
            out, jv = _jvp_double_backward(fn, params, vec)
        hjv = output_curvature(jv.detach()).detach()
        grads = torch.autograd.grad(out, params, hjv, allow_unused=True)
    return tuple(torch.zeros_like(p) if g is None else g for g, p in zip(grads, params))


def module_ggn_product(module: torch.nn.Module, inputs: Any, vec: Sequence[Tensor],
                       output_curvature: Callable[[Tensor], Tensor],
                       output_fn: Optional[Callable[[Any], Tensor]] = None, *,
                       forward_mode: bool = True) -> tuple[Tensor, ...]:
    """G v for ``module``'s trainable parameters (``vec`` shaped like them, in ``named_parameters`` order).

    ``inputs`` is the positional argument tuple (or one tensor); ``output_fn`` picks the tensor
    the curvature refers to when the module returns more than one (e.g. ``lambda out: out[0]``).
    The module runs once or twice per product: put it in eval mode if its forward has side
    effects (BatchNorm running statistics) or randomness (dropout).
    """
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    names = [name for name, _ in named]

    def fn(*params: Tensor) -> Tensor:
        out = functional_call(module, dict(zip(names, params)), inputs)
        return out if output_fn is None else output_fn(out)

    return ggn_vector_product(fn, tuple(p for _, p in named), tuple(vec), output_curvature,
                              forward_mode=forward_mode)


# --------------------------------------------------------------------------------------------
# Conjugate gradient
# --------------------------------------------------------------------------------------------

@dataclass
class CgResult:
    """Outcome of ``conjugate_gradient``; ``phis[i]`` is the quadratic phi at iterate i (phis[0]: start)."""
    x: Tensor
    iterates: list[tuple[int, Tensor]]
    num_iters: int
    phi: float
    phis: list[float]
    stop_reason: str  # "progress", "residual", "max_iters" or "negative_curvature"
    negative_curvature: bool = False


def backtrack_schedule(max_iters: int, base: float = 1.3) -> list[int]:
    """The iteration numbers ceil(base**j) <= max_iters at which CG saves iterates (Martens 2010, 4.6)."""
    if base <= 1:
        raise ValueError(f"backtrack base must exceed 1, got {base}")
    steps, j = [], 0
    while math.ceil(base ** j) <= max_iters:
        if not steps or math.ceil(base ** j) != steps[-1]:
            steps.append(math.ceil(base ** j))
        j += 1
    return steps


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, x0: Optional[Tensor] = None,
                       precond: Optional[Tensor | Callable[[Tensor], Tensor]] = None, max_iters: int = 50,
                       tol: float = 5e-4, min_iters: int = 0, backtrack_base: float = 1.3,
                       rtol_residual: Optional[float] = None) -> CgResult:
    """Preconditioned CG for A x = b, i.e. minimizing phi(x) = 0.5 x^T A x - b^T x (A = ``matvec``, SPD).

    ``precond`` is M (SPD): a tensor for a diagonal M, or a function that applies M^-1.
    Stops on Martens' rule (k = max(10, ceil(0.1 i)):
    i > k, phi_i < 0 and (phi_i - phi_{i-k}) / phi_i < k tol; not before ``min_iters``), when
    ||r|| <= rtol_residual ||b|| (default: 100 machine epsilons, i.e. numerically zero), at
    ``max_iters``, or when p^T A p <= 0 (``tol=0`` turns Martens' rule off, leaving a plain residual
    test). ``x0`` is used only if phi(x0) <= phi(0) = 0.
    phi is tracked from the residual r = b - A x: phi = -0.5 x^T (r + b), with no extra products.
    """
    saves = set(backtrack_schedule(max_iters, backtrack_base))
    if precond is None:
        solve_m = lambda r: r  # noqa: E731
    elif isinstance(precond, Tensor):
        solve_m = lambda r: r / precond  # noqa: E731
    else:
        solve_m = precond
    rtol = 100 * torch.finfo(b.dtype).eps if rtol_residual is None else rtol_residual
    stop_norm = rtol * b.norm().item()

    def apply(v: Tensor) -> Tensor:
        av = matvec(v)
        if not bool(torch.isfinite(av).all()):
            raise _fail("curvature-vector product")
        return av

    x = torch.zeros_like(b)
    r = b.clone()
    if x0 is not None and bool(x0.any()):
        r0 = b - apply(x0)
        if -0.5 * torch.dot(x0, r0 + b).item() <= 0:  # the warm start beats zero
            x, r = x0.clone(), r0
    phis = [-0.5 * torch.dot(x, r + b).item()]
    z = solve_m(r)
    p = z.clone()
    rz = torch.dot(r, z).item()
    iterates: list[tuple[int, Tensor]] = []
    reason, i = "max_iters", 0
    while i < max_iters:
        if r.norm().item() <= stop_norm or rz <= 0:
            reason = "residual"
            break
        ap = apply(p)
        curvature = torch.dot(p, ap).item()
        if curvature <= 0:
            reason = "negative_curvature"
            break
        alpha = rz / curvature
        x = x + alpha * p
        r = r - alpha * ap
        i += 1
        phis.append(-0.5 * torch.dot(x, r + b).item())
        if i in saves:
            iterates.append((i, x))
        k = max(10, math.ceil(0.1 * i))
        if i >= min_iters and i > k and phis[i] < 0 and (phis[i] - phis[i - k]) / phis[i] < k * tol:
            reason = "progress"
            break
        z = solve_m(r)
        rz_new = torch.dot(r, z).item()
        p = z + (rz_new / rz) * p
        rz = rz_new
    if not iterates or iterates[-1][0] != i:
        iterates.append((i, x))
    return CgResult(x=x, iterates=iterates, num_iters=i, phi=phis[i], phis=phis, stop_reason=reason,
                    negative_curvature=reason == "negative_curvature")


class FisherPreconditioner:
    """M = (F + lambda I)^exponent for the empirical Fisher F = (1/B) sum_b g_b g_b^T of B
    per-example gradients (the rows of a B x P matrix); calling it applies M^-1.

    F has rank at most B, so with F = U S U^T (U: P x r, orthonormal)
        M^-1 v = lambda^-e v + U ((S + lambda)^-e - lambda^-e) U^T v,
    exact, from the B x B Gram matrix's eigenvectors: neither F nor U is formed, and a product
    costs two passes over the rows. The first CG direction, M^-1 g, is then the damped natural
    gradient.
    """

    def __init__(self, rows: Tensor, damping: float, exponent: float = 1.0):
        if rows.dim() != 2 or rows.shape[0] < 1:
            raise ValueError(f"the Fisher preconditioner needs per-example gradients as rows, got shape "
                             f"{tuple(rows.shape)}")
        if damping <= 0:
            raise ValueError(f"the Fisher preconditioner needs a positive damping, got {damping}")
        num = rows.shape[0]
        gram = (rows @ rows.T).double() / num          # U S U^T = R^T R / B  <=>  R R^T / B = V S V^T
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)
        keep = eigenvalues > max(eigenvalues.max().item(), 0.0) * 1e-10
        s = eigenvalues[keep]
        self.rows = rows
        self.coeffs = (eigenvectors[:, keep] / (s * num).sqrt()).to(rows.dtype)  # U = R^T coeffs
        self.identity_scale = damping ** -exponent
        self.span_scale = ((s + damping) ** -exponent - self.identity_scale).to(rows.dtype)
        self.rank = int(keep.sum())

    def __call__(self, v: Tensor) -> Tensor:
        u_t_v = self.coeffs.T @ (self.rows @ v)
        return self.identity_scale * v + self.rows.T @ (self.coeffs @ (self.span_scale * u_t_v))


# --------------------------------------------------------------------------------------------
# The optimizer
# --------------------------------------------------------------------------------------------

@dataclass
class HessianFreeConfig:
    init_damping: float = field(default=1.0, metadata={
        "help": "Levenberg-Marquardt damping lambda at the start (added to the curvature as lambda I)"})
    damping_increase: float = field(default=1.5, metadata={
        "help": "lambda is multiplied by this when rho < 1/4 or the step is rejected"})
    damping_decrease: float = field(default=2 / 3, metadata={"help": "lambda is multiplied by this when rho > 3/4"})
    min_damping: float = field(default=1e-6, metadata={"help": "lambda never falls below this"})
    cg_max_iters: int = field(default=50, metadata={"help": "most conjugate-gradient iterations per HF iteration"})
    cg_tol: float = field(default=5e-4, metadata={
        "help": "Martens' epsilon: CG stops when the quadratic model gained less than this share over the "
                "last max(10, 0.1 i) of its i iterations"})
    cg_decay: float = field(default=0.95, metadata={
        "help": "CG starts from this times the previous iteration's direction (warm start)"})
    backtrack_base: float = field(default=1.3, metadata={
        "help": "CG iterates are kept at iterations ceil(base^j), for backtracking on the held-out loss"})
    armijo_c: float = field(default=1e-2, metadata={"help": "Armijo sufficient-decrease constant of the line search"})
    line_search_shrink: float = field(default=0.8, metadata={
        "help": "the line search multiplies the step size by this after each failed try"})
    line_search_max_steps: int = field(default=20, metadata={
        "help": "most step sizes the line search tries before the step is rejected"})
    preconditioner: str = field(default="diagonal", metadata={
        "choices": PRECONDITIONERS,
        "help": "CG's preconditioner M: diagonal (Martens 2010: (mean squared per-batch gradient + lambda)^exponent), "
                "fisher (the empirical Fisher of per-utterance gradients of the curvature sample plus lambda I, "
                "to the exponent: natural-gradient preconditioning as in NGHF) or none"})
    precond_exponent: float = field(default=0.75, metadata={
        "help": "exponent of the CG preconditioner (M = (statistic + lambda)^exponent)"})
    rho_data: str = field(default="heldout", metadata={
        "choices": RHO_DATA,
        "help": "the data of rho, which sets the damping: heldout (the held-out batches; a quadratic model that "
                "does not generalize raises lambda) or gradient (the gradient's own batches, one more forward "
                "pass; Martens' choice: lambda then tracks only how well the quadratic fits)"})

    def __post_init__(self) -> None:
        if self.rho_data not in RHO_DATA:
            raise ValueError(f"unknown --hf-rho-data {self.rho_data!r}; choose from {', '.join(RHO_DATA)}")
        if self.preconditioner not in PRECONDITIONERS:
            raise ValueError(f"unknown --hf-preconditioner {self.preconditioner!r}; "
                             f"choose from {', '.join(PRECONDITIONERS)}")


@dataclass
class StepInfo:
    iteration: int
    loss: float              # objective on the gradient batch at the start
    heldout_before: float
    heldout_after: float     # after the accepted step (== before when rejected)
    rho: float
    damping: float           # lambda used in this iteration
    next_damping: float
    cg_iters: int
    backtrack_iter: int      # CG iteration number of the saved iterate that was chosen
    step_size: float         # Armijo alpha (0 when the step was rejected)
    step_norm: float         # ||alpha d||
    accepted: bool
    seconds: float
    cg_stop_reason: str = ""
    cg_phis: list[float] = field(default_factory=list)  # the damped quadratic model at each CG iterate (0: start)


def _assign(params: Sequence[Tensor], vec: Tensor) -> None:
    """Copy a flat vector into the parameters in place (no aliasing of ``vec``, storage kept)."""
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(vec[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


class HessianFree:
    """Hessian-free optimizer over ``params``; call ``step`` with the three closures (see ``step``)."""

    def __init__(self, params: Sequence[torch.nn.Parameter], config: HessianFreeConfig = HessianFreeConfig()):
        self.params = list(params)
        self.config = config
        self.damping = config.init_damping
        self.direction: Optional[Tensor] = None
        self.iteration = 0

    def state_dict(self) -> dict:
        """Damping, previous CG direction and iteration count: all that a bit-identical resume needs."""
        return {"damping": self.damping, "iteration": self.iteration,
                "direction": None if self.direction is None else self.direction.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.damping = float(state["damping"])
        self.iteration = int(state["iteration"])
        self.direction = None if state["direction"] is None else state["direction"].clone()

    def _value_at(self, value_fn: HeldoutFn, point: Tensor, what: str = "held-out objective") -> float:
        """Move the parameters to ``point`` and evaluate ``value_fn`` (by default the held-out objective) there."""
        _assign(self.params, point)
        value = float(value_fn())
        if not math.isfinite(value):
            raise _fail(what)
        return value

    def step(self, gradient_fn: GradientFn, curvature_fn: CurvatureFn, heldout_fn: HeldoutFn,
             gradient_value_fn: Optional[HeldoutFn] = None) -> StepInfo:
        """One HF iteration; on any error the parameters are restored to their values at the start.

        ``gradient_fn() -> (f, g, stat)`` on the gradient batch, where ``stat`` is None, the mean
        squared per-example gradient (diagonal preconditioner) or the per-example gradients as the
        rows of a matrix (either preconditioner); ``curvature_fn(v) -> G v``
        (undamped, at the step's starting point, on the curvature batch); ``heldout_fn() -> float``
        at the current parameter values; ``gradient_value_fn() -> float``, the objective on the
        gradient batch at the current values (needed for ``rho_data="gradient"``). The objective
        is minimized.
        """
        if self.config.rho_data == "gradient" and gradient_value_fn is None:
            raise ValueError("rho_data='gradient' needs gradient_value_fn")
        start = time.perf_counter()
        theta = parameters_to_vector(self.params).detach().clone()
        try:
            return self._step(theta, start, gradient_fn, curvature_fn, heldout_fn, gradient_value_fn)
        except BaseException:
            _assign(self.params, theta)
            raise

    def _gradient(self, gradient_fn: GradientFn, theta: Tensor
                  ) -> tuple[float, Tensor, Optional[Tensor | FisherPreconditioner]]:
        """Call ``gradient_fn``, check its results, and return (f, g, preconditioner or None)."""
        loss, g, stat = gradient_fn()
        loss = float(loss)
        g = g.detach().to(theta).reshape(-1)
        if g.numel() != theta.numel():
            raise ValueError(f"gradient has {g.numel()} elements, parameters {theta.numel()}")
        if not math.isfinite(loss):
            raise _fail("loss on the gradient batch")
        if not bool(torch.isfinite(g).all()):
            raise _fail("gradient")
        kind, exponent = self.config.preconditioner, self.config.precond_exponent
        if kind == "none" or (kind == "diagonal" and stat is None):
            return loss, g, None
        if kind == "fisher" and (stat is None or stat.dim() != 2):
            raise ValueError("--hf-preconditioner fisher needs per-example gradients (a 2-D tensor, one row "
                             "each) from gradient_fn")
        stat = stat.detach().to(theta)
        if not bool(torch.isfinite(stat).all()):
            raise _fail("preconditioner statistic (per-example gradients or their mean square)")
        if kind == "fisher":
            return loss, g, FisherPreconditioner(stat.reshape(stat.shape[0], -1), self.damping, exponent)
        sq = stat.reshape(stat.shape[0], -1).pow(2).mean(0) if stat.dim() == 2 else stat.reshape(-1)
        return loss, g, (sq + self.damping) ** exponent

    def _backtrack(self, heldout_fn: HeldoutFn, theta: Tensor, iterates: list[tuple[int, Tensor]]) -> tuple[int, float]:
        """Martens' CG backtracking: walk back from the last saved iterate while held-out keeps improving.

        Returns the index of the chosen iterate in ``iterates`` and its held-out value.
        """
        chosen = len(iterates) - 1
        best = self._value_at(heldout_fn, theta + 1.0 * iterates[chosen][1])
        for j in range(chosen - 1, -1, -1):
            value = self._value_at(heldout_fn, theta + 1.0 * iterates[j][1])
            if value >= best:
                break
            best, chosen = value, j
        return chosen, best

    def _line_search(self, heldout_fn: HeldoutFn, theta: Tensor, d: Tensor, slope: float, h0: float,
                     h_full: float) -> tuple[float, float]:
        """Armijo backtracking on held-out data: (alpha, value), or (0, h0) when no step qualifies.

        alpha = 1 reuses ``h_full`` (held-out at theta + d, known from CG backtracking). A step size
        is taken only if it also does not increase the held-out objective, whatever ``armijo_c`` is.
        """
        cfg = self.config
        for k in range(cfg.line_search_max_steps):
            alpha = cfg.line_search_shrink ** k
            value = h_full if k == 0 else self._value_at(heldout_fn, theta + alpha * d)
            if value <= h0 + cfg.armijo_c * alpha * slope and value <= h0:
                return alpha, value
        return 0.0, h0

    def _step(self, theta: Tensor, start: float, gradient_fn: GradientFn, curvature_fn: CurvatureFn,
              heldout_fn: HeldoutFn, gradient_value_fn: Optional[HeldoutFn]) -> StepInfo:
        cfg, lam = self.config, self.damping
        loss, g, precond = self._gradient(gradient_fn, theta)
        h0 = self._value_at(heldout_fn, theta)

        def damped(v: Tensor) -> Tensor:
            return curvature_fn(v).detach().to(theta).reshape(-1) + lam * v

        x0 = None
        if self.direction is not None and self.direction.numel() == theta.numel():
            x0 = cfg.cg_decay * self.direction.to(theta)
        cg = conjugate_gradient(damped, -g, x0=x0, precond=precond, max_iters=cfg.cg_max_iters,
                                tol=cfg.cg_tol, backtrack_base=cfg.backtrack_base)
        chosen, h_full = self._backtrack(heldout_fn, theta, cg.iterates)
        backtrack_iter, d = cg.iterates[chosen]

        # rho with the undamped model, reusing CG's phi (no extra curvature product):
        # q(d) - q(0) = g^T d + 0.5 d^T G d = phi(d) - 0.5 lambda ||d||^2.
        predicted = cg.phis[backtrack_iter] - 0.5 * lam * torch.dot(d, d).item()
        if cfg.rho_data == "gradient":
            actual = self._value_at(gradient_value_fn, theta + d, "objective on the gradient batch") - loss
        else:
            actual = h_full - h0
        rho = actual / predicted if predicted < 0 else -math.inf

        alpha, after = self._line_search(heldout_fn, theta, d, torch.dot(g, d).item(), h0, h_full)
        accepted = alpha > 0
        _assign(self.params, theta + alpha * d if accepted else theta)

        if rho < 0.25 or not accepted:
            self.damping = lam * cfg.damping_increase
        elif rho > 0.75:
            self.damping = lam * cfg.damping_decrease
        self.damping = max(self.damping, cfg.min_damping)
        self.direction = d.clone()
        self.iteration += 1

        info = StepInfo(iteration=self.iteration, loss=loss, heldout_before=h0, heldout_after=after, rho=rho,
                        damping=lam, next_damping=self.damping, cg_iters=cg.num_iters,
                        backtrack_iter=backtrack_iter, step_size=alpha,
                        step_norm=alpha * torch.linalg.vector_norm(d).item(), accepted=accepted,
                        seconds=time.perf_counter() - start, cg_stop_reason=cg.stop_reason, cg_phis=cg.phis)
        logger.info("HF iter %d: f=%.6g heldout %.6g -> %.6g rho=%.4g lambda=%.4g -> %.4g cg_iters=%d (%s) "
                    "backtrack=%d alpha=%.4g step_norm=%.4g %s %.2fs", info.iteration, loss, h0, after, rho,
                    lam, self.damping, cg.num_iters, cg.stop_reason, backtrack_iter, alpha, info.step_norm,
                    "accepted" if accepted else "rejected", info.seconds)
        return info
