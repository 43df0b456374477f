"""Optimizers by name, each giving a *stepper* that the fit loop drives one step at a time.

A stepper holds the parameters ``theta`` (a flat tensor ``(P,)``) and has ``step()``,
which computes the loss and its gradient at the current ``theta``, returns them as
``(loss, grad_norm)`` and then moves ``theta``. So record ``i`` of a fit describes the
point the step started from, as the lesson prints it. A stepper that knows when it is
done (a least-squares method) sets ``stop = (reason, text)`` after a step; the fit loop
then ends with that reason (a key of ``result.REASONS``).

- ``gd``       the lesson's update ``theta <- theta - lr * grad``. The gradient is zeroed
               each step unless ``accumulate_grad=True``: then, as in the lesson's own
               loop, ``grad`` is the sum of every gradient so far.
- ``momentum`` full-batch gradient descent with momentum (``torch.optim.SGD``, 0.9).
- ``sgd``      mini-batch SGD (``batch_size``, default 32; ``momentum``, ``nesterov``).
- ``adam``, ``adamw``, ``rmsprop``, ``lbfgs`` (strong Wolfe line search; one step is up to
  ``max_iter`` L-BFGS iterations): ``torch.optim``.

Every method but L-BFGS steps by its update rule (``OptimizerSpec.rule``, written as
``torch.optim`` computes it, one elementwise operation at a time), the very code that
``batch_gd`` runs over many problems: ``fit`` is its one-problem case, step for step and
bit for bit (torch's fused kernels, ``addcdiv`` and ``add(alpha=)``, round differently).

Learning-rate schedules (``SCHEDULES``): constant, step, cosine, onecycle, from
``torch.optim.lr_scheduler``: step ``k`` runs at ``lr * s_k``, ``s_k`` read from the
scheduler on a stand-in optimizer at rate 1 (``ScheduleSteps``), as ``batch_gd`` does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .errors import InputError
from .problem import Problem
from .stepper import Stepper, grad_norm


class GD(torch.optim.Optimizer):
    """Plain gradient descent, the lesson's ``abc -= abc.grad * lr``, as a ``torch.optim``
    optimizer: a schedule's stand-in (``ScheduleSteps``); a fit steps by ``_rule_gd``."""

    def __init__(self, params, lr: float):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(p.grad * group["lr"])


# ------------------------------------------------------------------ the update rules
# One step of each gradient method on rows ``u`` ``(k, F)`` (one row a problem; ``fit``'s
# is one row) with gradients ``g`` and rates ``lr`` ``(k, 1)`` (fit's ``(1,)``); ``state``:
# two tensors like ``u`` (momentum / Adam's moments), replaced in the list; ``k``: the step
# (0 first); ``mom``, ``betas``: what a schedule sets this step, or None (the options' own).
# Written as torch.optim computes them, one elementwise operation at a time, so that a row
# gives the same bits whatever the batch around it.

def _rule_gd(u, g, lr, state, k, o, mom, betas):
    return u - lr * g


def _rule_momentum(u, g, lr, state, k, o, mom, betas):
    mu = o["momentum"] if mom is None else mom
    buf = g.clone() if k == 0 else mu * state[0] + g
    state[0] = buf
    return u - lr * (g + mu * buf if o["nesterov"] else buf)


def _adam(u, g, lr, state, k, wd, decoupled, betas):
    b1, b2 = betas
    if wd and decoupled:
        u = u * (1 - lr * wd)
    elif wd:
        g = g + wd * u
    state[0] = state[0] + (1 - b1) * (g - state[0])
    state[1] = b2 * state[1] + (1 - b2) * g * g
    step = k + 1
    denom = state[1].sqrt() / math.sqrt(1 - b2 ** step) + 1e-8
    return u - (lr / (1 - b1 ** step)) * state[0] / denom


def _rule_adam(u, g, lr, state, k, o, mom, betas):
    return _adam(u, g, lr, state, k, o["weight_decay"], False, betas or (0.9, 0.999))


def _rule_adamw(u, g, lr, state, k, o, mom, betas):
    return _adam(u, g, lr, state, k, o["weight_decay"], True, betas or (0.9, 0.999))


def _rule_rmsprop(u, g, lr, state, k, o, mom, betas):
    state[1] = 0.99 * state[1] + (1 - 0.99) * g * g
    q = g / (state[1].sqrt() + 1e-8)
    mu = o["momentum"] if mom is None else mom
    if mu > 0:
        state[0] = mu * state[0] + q
        return u - lr * state[0]
    return u - lr * q


class ScheduleSteps:
    """A schedule step by step: ``current()`` gives ``(s_k, momentum, betas)``, the factor of
    the learning rate at step ``k`` and the momentum / betas the schedule sets (None where
    it leaves them to the options), read from torch's scheduler on a stand-in optimizer at
    rate 1; ``step()`` moves to step ``k + 1``. A constant schedule reads nothing.

        >>> s = ScheduleSteps("gd", {}, "step", 6)
        >>> [(s.current()[0], s.step())[0] for _ in range(6)]
        [1.0, 1.0, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002]
    """

    def __init__(self, method: str, options: dict, schedule: str, steps: int):
        self._sched = None
        self._now: tuple = (1.0, None, None)
        if schedule == "constant":
            return
        spec = get_optimizer(method)
        self._opt = spec.make([torch.zeros(1, requires_grad=True)], 1.0,
                              {**spec.options, **options})
        self._sched = SCHEDULES[schedule](self._opt, 1.0, steps)
        self._read()

    def _read(self) -> None:
        group = self._opt.param_groups[0]
        self._now = (float(group["lr"]), group.get("momentum"), group.get("betas"))

    def current(self) -> tuple:
        return self._now

    def step(self) -> None:
        if self._sched is None:
            return
        self._opt._opt_called = True        # no "scheduler.step() before optimizer.step()"
        self._sched.step()
        self._read()


class RuleOptimizer(torch.optim.Optimizer):
    """A gradient method by its update rule (``OptimizerSpec.rule``): ``fit``'s one-row
    case of what ``batch_gd`` runs, at the rate ``group["lr"] * s_k`` of ``schedule``."""

    #: the update replaces each parameter's storage instead of writing into it, so a
    #: detached view taken before a step keeps the old values (the fit loop needs no copy)
    replaces_storage = True

    def __init__(self, params, lr: float, rule: Callable, options: dict,
                 schedule: ScheduleSteps):
        super().__init__(params, {"lr": lr})
        self.rule, self.options, self.schedule, self.k = rule, options, schedule, 0
        self._rate: tuple = (None, None)

    @torch.no_grad()
    def step(self, closure=None):
        self.fast_step()

    def _lr(self, lr: float, factor: float, p: torch.Tensor) -> torch.Tensor:
        """``lr * s_k`` as ``batch_gd`` forms it (a tensor of p's dtype times the factor),
        kept while it does not change."""
        key = (lr, factor, p.dtype, p.device)
        if self._rate[0] != key:
            self._rate = (key, torch.full((1,), lr, dtype=p.dtype, device=p.device) * factor)
        return self._rate[1]

    def fast_step(self):
        self._opt_called = True
        factor, mom, betas = self.schedule.current()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p].setdefault("moments", [torch.zeros_like(p),
                                                             torch.zeros_like(p)])
                p.data = self.rule(p.detach(), p.grad, self._lr(group["lr"], factor, p), state,
                                   self.k, self.options, mom, betas)
        self.k += 1


class GradientStepper(Stepper):
    """Drives a ``torch.optim`` optimizer on a problem's objective."""

    def __init__(self, problem: Problem, theta: torch.Tensor, optimizer: torch.optim.Optimizer,
                 scheduler=None, accumulate: bool = False, batch_size: int | None = None,
                 seed: int = 0, closure: bool = False, fused=None):
        self.problem, self.theta, self.opt, self.scheduler = problem, theta, optimizer, scheduler
        self.fused = fused          # theta -> (grad, loss) in one pass, or None (fused_step)
        self.lr = float(optimizer.param_groups[0]["lr"])
        self.accumulate, self.closure = accumulate, closure
        self._update = getattr(optimizer, "fast_step", optimizer.step)
        self.replaces_storage = getattr(optimizer, "replaces_storage", False) and not closure
        self.batch_size = batch_size if batch_size and batch_size < problem.n else None
        self._gen = torch.Generator(device=theta.device).manual_seed(seed)
        self._order, self._at = None, 0
        self._one = torch.ones((), dtype=theta.dtype, device=theta.device)

    def _batch(self):
        """Rows of the next mini-batch: a fresh seeded permutation each epoch."""
        if self.batch_size is None:
            return None
        if self._order is None or self._at + self.batch_size > self.problem.n:
            self._order = torch.randperm(self.problem.n, generator=self._gen,
                                         device=self.theta.device)
            self._at = 0
        idx = self._order[self._at:self._at + self.batch_size]
        self._at += self.batch_size
        return idx

    def step(self) -> tuple[float, float]:
        theta = self.theta
        if self.closure:
            first = []

            def closure():
                theta.grad = None
                loss = self.problem.objective(theta)
                loss.backward()
                if not first:
                    first.append((loss.item(), grad_norm(theta.grad)))
                return loss

            self.opt.step(closure)
            loss, gnorm = first[0]
        elif self.fused is not None and (out := self.fused(theta.detach())) is not None:
            g, loss_t = out
            theta.grad = theta.grad + g if self.accumulate and theta.grad is not None else g
            loss, gnorm = loss_t.item(), grad_norm(theta.grad)
            if math.isfinite(loss):
                self._update()
        else:
            if not self.accumulate:
                theta.grad = None
            loss_t = self.problem.objective(theta, self._batch())
            loss_t.backward(self._one)
            loss, gnorm = loss_t.item(), grad_norm(theta.grad)
            if math.isfinite(loss):
                self._update()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss, gnorm

    def set_lr(self, value: float) -> None:
        """A new rate from the next step on; the optimizer's state (momentum, Adam's
        moments) is kept. Under a schedule the new rate scales the schedule's base."""
        value = float(value)
        for group in self.opt.param_groups:
            if isinstance(self.opt, RuleOptimizer):      # its schedule scales group["lr"]
                group["lr"] = value
            elif self.scheduler is not None and "initial_lr" in group:
                group["lr"] *= value / self.lr
                group["initial_lr"] = value
            else:
                group["lr"] = value
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LRScheduler):
            self.scheduler.base_lrs = [value for _ in self.scheduler.base_lrs]
        self.lr = value


def _schedule_constant(opt, lr, steps):
    return None


def _schedule_step(opt, lr, steps):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, steps // 3), gamma=0.1)


def _schedule_cosine(opt, lr, steps):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))


def _schedule_onecycle(opt, lr, steps):
    # the momentum cycles with the rate where the optimizer has one (momentum, Adam's beta1);
    # gd and L-BFGS have none, and OneCycleLR refused them
    group = opt.param_groups[0]
    cycle = bool(group.get("momentum")) or "betas" in group
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(2, steps + 1),
                                               cycle_momentum=cycle)


SCHEDULES: dict[str, Callable] = {
    "constant": _schedule_constant,
    "step": _schedule_step,        # lr x 0.1 after each third of the run
    "cosine": _schedule_cosine,    # cosine decay to 0 over the run
    "onecycle": _schedule_onecycle,  # warm up to lr, then anneal (fastai's fit_one_cycle)
}


@dataclass(frozen=True)
class OptimizerSpec:
    """A registry entry: how to build the stepper, its default learning rate, its options."""

    name: str
    description: str
    default_lr: float
    make: Callable[..., torch.optim.Optimizer]
    options: dict = field(default_factory=dict)    # option -> default
    closure: bool = False
    minibatch: bool = False
    # a stepper of its own instead of a torch.optim optimizer (e.g. Levenberg-Marquardt):
    # stepper(problem, theta, lr=, steps=, seed=, options=) -> object with step() and ``stop``
    stepper: Callable | None = None
    # the engine that runs it over many problems at once (fit_many, the batched lr sweep,
    # the out-of-core fit): "gradient" (batch_gd), "lm" or "irls"; None: not batched
    batched: str | None = None
    # its update rule (see "the update rules"), run by fit and batch_gd alike; None: make's
    # torch.optim optimizer steps (L-BFGS). ``make`` also gives a schedule's stand-in.
    rule: Callable | None = None
    # a method that picks another (auto): choose(problem, n_params) -> the name it runs
    choose: Callable | None = None


def _gd(params, lr, o):
    return GD(params, lr)


def _momentum(params, lr, o):
    return torch.optim.SGD(params, lr=lr, momentum=o["momentum"], nesterov=o["nesterov"])


def _adam_opt(params, lr, o):
    return torch.optim.Adam(params, lr=lr, weight_decay=o["weight_decay"])


def _adamw(params, lr, o):
    return torch.optim.AdamW(params, lr=lr, weight_decay=o["weight_decay"])


def _rmsprop(params, lr, o):
    return torch.optim.RMSprop(params, lr=lr, momentum=o["momentum"])


def _lbfgs(params, lr, o):
    return torch.optim.LBFGS(params, lr=lr, max_iter=o["max_iter"], history_size=o["history_size"],
                             tolerance_grad=1e-12, tolerance_change=1e-15,
                             line_search_fn="strong_wolfe")


OPTIMIZERS: dict[str, OptimizerSpec] = {s.name: s for s in [
    OptimizerSpec("gd", "gradient descent, the lesson's update", 0.01, _gd,
                  {"accumulate_grad": False}, batched="gradient", rule=_rule_gd),
    OptimizerSpec("momentum", "gradient descent with momentum", 0.01, _momentum,
                  {"momentum": 0.9, "nesterov": False}, batched="gradient",
                  rule=_rule_momentum),
    OptimizerSpec("sgd", "mini-batch stochastic gradient descent", 0.01, _momentum,
                  {"momentum": 0.0, "nesterov": False, "batch_size": 32}, minibatch=True,
                  rule=_rule_momentum),
    OptimizerSpec("adam", "Adam", 0.05, _adam_opt, {"weight_decay": 0.0}, batched="gradient",
                  rule=_rule_adam),
    OptimizerSpec("adamw", "Adam with decoupled weight decay", 0.05, _adamw,
                  {"weight_decay": 0.01}, batched="gradient", rule=_rule_adamw),
    OptimizerSpec("rmsprop", "RMSprop", 0.01, _rmsprop, {"momentum": 0.0}, batched="gradient",
                  rule=_rule_rmsprop),
    OptimizerSpec("lbfgs", "L-BFGS with a strong Wolfe line search", 1.0, _lbfgs,
                  {"max_iter": 20, "history_size": 20}, closure=True),
]}

# Levenberg-Marquardt (lm.py imports only problem and errors, so no cycle); lr is ignored
from .lm import OPTIONS as _LM_OPTIONS, lm_stepper  # noqa: E402
OPTIMIZERS["lm"] = OptimizerSpec("lm", "Levenberg-Marquardt, for mse and rmse (lr is ignored)",
                                 1.0, None, dict(_LM_OPTIONS), stepper=lm_stepper, batched="lm")

# the exact minimum of mae and huber (irls.py builds on lm.py)
from .irls import OPTIONS as _IRLS_OPTIONS, irls_stepper  # noqa: E402
OPTIMIZERS["irls"] = OptimizerSpec("irls", "iteratively reweighted least squares: the exact "
                                   "minimum of mae and huber (lr is ignored)", 1.0, None,
                                   dict(_IRLS_OPTIONS), stepper=irls_stepper, batched="irls")

AUTO_MAX_PARAMS = 300


def batched_optimizers(*kinds: str) -> tuple[str, ...]:
    """The registered optimizers with a batched engine (of one of ``kinds``, if given)."""
    return tuple(n for n, s in OPTIMIZERS.items()
                 if s.batched is not None and (not kinds or s.batched in kinds))


def choose_method(loss, n_params: int, n_points: int, identifiable: bool = True) -> str:
    """What ``auto`` runs: the method that reaches the optimum of this loss.

    LM for squared errors and IRLS for mae and huber, up to ``AUTO_MAX_PARAMS`` parameters
    and no more parameters than points (as many: the fit interpolates); beyond that, and for flexible models (ReLU sums and
    networks, which have no unique optimum: ``auto`` fits them from several starts),
    L-BFGS for squared errors or Adam for the others.
    """
    if identifiable and n_params <= AUTO_MAX_PARAMS and n_params <= n_points:
        return "lm" if loss.squared else "irls"
    if not identifiable and n_params <= AUTO_MAX_PARAMS:
        return "lbfgs"        # a local method per start; fast, and it never blew up here
    return "lbfgs" if loss.squared else "adam"


def _auto_choice(problem, n_params: int) -> str:
    return choose_method(problem.loss, n_params, problem.n, problem.model.identifiable)


class DefaultRate(float):
    """A learning rate that was not given: the default of the method that runs (``auto``'s,
    whose choice is made on the data). It reads as 1.0 where a face shows a number."""


OPTIMIZERS["auto"] = OptimizerSpec("auto", "the exact optimum for the loss: lm (mse, rmse), "
                                   "irls (mae, huber); lbfgs or adam past "
                                   f"{AUTO_MAX_PARAMS} parameters (with lr and schedule, "
                                   "if given)", DefaultRate(1.0), None, {},
                                   choose=_auto_choice)


def get_optimizer(name: str) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {name!r}", expected="one of " + ", ".join(OPTIMIZERS))
    return OPTIMIZERS[name]


def resolve_options(spec: OptimizerSpec, options: dict) -> dict:
    """The spec's defaults updated by ``options``; an option it does not take is refused."""
    unknown = sorted(set(options) - set(spec.options))
    weights = [k for k in unknown if k in ("weights", "weight")]
    if weights:     # lmfit's, numpy's and statsmodels' way, not an optimizer's option
        raise InputError(f"gradfit does not take {weights[0]}=",
                         expected="sigma=, the uncertainties of y (least squares weights "
                                  "= 1/sigma^2: sigma=1/np.sqrt(weights))")
    if unknown:
        takes = ("one of its options: " + ", ".join(spec.options)) if spec.options else \
            "no options (it takes none)"
        raise InputError(f"optimizer {spec.name!r} does not take {', '.join(unknown)}",
                         expected=takes)
    return {**spec.options, **options}


def make_stepper(name: str, problem: Problem, theta: torch.Tensor, *, lr: float, steps: int,
                 schedule: str = "constant", seed: int = 0, **options):
    """The stepper for optimizer ``name`` on ``problem``, starting from ``theta`` (a leaf)."""
    spec = get_optimizer(name)
    o = resolve_options(spec, options)
    if schedule not in SCHEDULES:
        raise InputError(f"unknown schedule {schedule!r}", expected="one of " + ", ".join(SCHEDULES))
    if spec.choose is not None:        # auto: the chosen method, at the rate and schedule given
        chosen = spec.choose(problem, theta.shape[0])
        rate = OPTIMIZERS[chosen].default_lr if isinstance(lr, DefaultRate) else lr
        stepper = make_stepper(chosen, problem, theta, lr=rate, steps=steps,
                               schedule=schedule, seed=seed)
        stepper.chosen = chosen
        return stepper
    if spec.stepper is not None:
        return spec.stepper(problem, theta, lr=lr, steps=steps, seed=seed, options=o)
    if spec.rule is not None:          # the rule, at lr * s_k of its schedule
        plan = ScheduleSteps(name, o, schedule, steps)
        opt = RuleOptimizer([theta], lr, spec.rule, o, plan)
        scheduler = plan if schedule != "constant" else None
    else:
        opt = spec.make([theta], lr, o)
        scheduler = SCHEDULES[schedule](opt, lr, steps)
    batch_size = o.get("batch_size") if spec.minibatch else None
    fused = None
    if not spec.closure and not (batch_size and batch_size < problem.n):
        from .fused_step import fused_gradient      # a full-batch step on big data, compiled
        fused = fused_gradient(problem, steps)
    return GradientStepper(problem, theta, opt, scheduler,
                           accumulate=bool(o.get("accumulate_grad", False)),
                           batch_size=batch_size, seed=seed, closure=spec.closure, fused=fused)
