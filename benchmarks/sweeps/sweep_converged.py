"""Correctness sweep: fits called converged whose answer is wrong, and fit vs fit_many.

For seeded random problems (models x noise x n x sigma x bounds x fixed x starts x loss),
fit each problem with ``gradfit.fit`` and the whole batch with ``gradfit.fit_many`` (float64,
shared or per-problem x, or a ragged long table; float32 with a looser tolerance), and
compare against scipy (a test-only oracle):

- wrong-converged: converged=True, but polishing gradfit's own point with scipy
  (least_squares at xtol=ftol=gtol=1e-15, trf with bounds; Nelder-Mead for mae) lowers the
  loss by more than 1e-8 relative, in float64 and in extended precision (so the point is
  not a local minimum; where a model's terms cancel the float64 loss errs by that much), or
  a converged claim whose parameters ran off (|p| > 1e6), or a converged claim on a
  redundant model (a or b neither fixed nor on a bound; float32's claims too).
- stderr: mse, converged, no active bound: stderr vs curve_fit's pcov formula at the point,
  1e-4 relative.
- many!=fit: params of fit_many vs fit, 1e-8 relative (of max(|a|, |b|, stderr)); converged
  flags equal; float32: 1e-3 relative of max(|p|, stderr).
- better-elsewhere (info only): scipy from several starts found a lower minimum elsewhere.

Alarms judged legitimate (not defects), each reproduced by hand:

- starts=K: fit and fit_many draw their other starts differently (``multistart.start_point``,
  ``many_starts.spread_starts``) and may keep different minima of equal loss (gauss's s and
  -s, dexp's (a, b) and (c, d) swapped) or of different loss (one's starts all failed);
- ends at the rounding level of the data, and ill-conditioned fits (dexp with b ~ d, heavy
  outliers, a ~ -c cancelling): the two losses agree to ~1e-15 while parameters differ by
  1e-8 to 1e-6; the loss cannot place the minimum closer than ``sqrt(eps * S / S'')``;
- float32 fit_many against float64 fit: float32 often cannot certify what float64 does
  (failed, saying why); its converged claims hold to float32's rounding (fit in float32
  says the same);
- a flexible model with starts=1 under auto: fit runs L-BFGS, fit_many LM (there is no
  batched L-BFGS), so each ends in its own local minimum.

``--hostile`` adds hostile-but-valid problems (a different draw; the default reproduces the
earlier runs): model families at extreme scales (x ~ 1e6, y ~ 1e-9) and a flexible model
(``relu:2``), and data with heavy outliers or x in tight clusters.

    PYTHONPATH=src python benchmarks/sweeps/sweep_converged.py --cases 300 --seed 0
    PYTHONPATH=src python benchmarks/sweeps/sweep_converged.py --cases 36 --seed 1 --hostile
"""
import argparse
import collections
import time
import warnings

import numpy as np
import scipy.optimize as so

import gradfit

warnings.filterwarnings("ignore")

M = {}   # name -> (expr, names, numpy f(x, *p), x range, truth sampler, kind)


def model(name, expr, names, f, xr, truth, kind="ok"):
    M[name] = (expr, names, f, xr, truth, kind)


model("gauss", "A*exp(-(x-mu)^2/(2*s^2))+C", "A mu s C".split(),
      lambda x, A, mu, s, C: A * np.exp(-(x - mu) ** 2 / (2 * s ** 2)) + C, (-5, 5),
      lambda r: [r.uniform(1, 3), r.uniform(-1, 1), r.uniform(0.5, 1.5), r.uniform(-.5, .5)])
model("dexp", "a*exp(-b*x)+c*exp(-d*x)", "a b c d".split(),
      lambda x, a, b, c, d: a * np.exp(-b * x) + c * np.exp(-d * x), (0, 5),
      lambda r: (lambda b: [r.uniform(1, 2), b, r.uniform(.5, 1),
                            b * (1 + 10 ** r.uniform(-2, 0.5))])(r.uniform(.3, 1)))
model("logistic", "L/(1+exp(-k*(x-x0)))", "L k x0".split(),
      lambda x, L, k, x0: L / (1 + np.exp(-k * (x - x0))), (-5, 5),
      lambda r: [r.uniform(1, 3), r.uniform(.5, 2), r.uniform(-1, 1)])
model("mm", "V*x/(K+x)", "V K".split(), lambda x, V, K: V * x / (K + x), (0.1, 10),
      lambda r: [r.uniform(1, 3), r.uniform(.5, 3)])
model("sine", "A*sin(w*x+p)+c", "A w p c".split(),
      lambda x, A, w, p, c: A * np.sin(w * x + p) + c, (0, 10),
      lambda r: [r.uniform(1, 2), r.uniform(.8, 1.5), r.uniform(-1, 1), r.uniform(-.5, .5)])
model("power", "a*x^b", "a b".split(), lambda x, a, b: a * x ** b, (0.5, 5),
      lambda r: [r.uniform(.5, 2), r.uniform(-1.5, 1.5)])
model("poly3", "poly:3", "c0 c1 c2 c3".split(),
      lambda x, c0, c1, c2, c3: c0 + c1 * x + c2 * x ** 2 + c3 * x ** 3, (-2, 2),
      lambda r: list(r.uniform(-2, 2, 4)))
model("rational", "(a+b*x)/(1+c*x)", "a b c".split(),
      lambda x, a, b, c: (a + b * x) / (1 + c * x), (0, 5),
      lambda r: [r.uniform(.5, 2), r.uniform(1, 3), r.uniform(.2, 1)])
model("red_ab", "a*b*x", "a b".split(), lambda x, a, b: a * b * x, (0, 3),
      lambda r: [r.uniform(1, 2), r.uniform(1, 2)], "redundant")
model("red_exp", "a*exp(b+c*x)", "a b c".split(), lambda x, a, b, c: a * np.exp(b + c * x),
      (0, 3), lambda r: [r.uniform(1, 2), r.uniform(-.5, .5), r.uniform(-1, 1)], "redundant")
# optimum at infinity: data from a line
model("exp_line", "a*exp(b*x)+c", "a b c".split(), lambda x, a, b, c: a * np.exp(b * x) + c,
      (0, 3), lambda r: [r.uniform(1, 2), r.uniform(.5, 1.5), 0.0], "line")
model("mm_line", "V*x/(K+x)", "V K".split(), lambda x, V, K: V * x / (K + x), (0.1, 10),
      lambda r: [r.uniform(1, 3), r.uniform(.5, 3)], "line")
CLASSIC = tuple(M)
# --hostile: extreme scales and a flexible model
model("dexp_scaled", "a*exp(-b*x)+c*exp(-d*x)", "a b c d".split(),
      lambda x, a, b, c, d: a * np.exp(-b * x) + c * np.exp(-d * x), (0, 5e6),
      lambda r: (lambda b: [r.uniform(1, 2) * 1e-9, b, r.uniform(.5, 1) * 1e-9,
                            b * (1 + 10 ** r.uniform(-1, 0.5))])(r.uniform(.3, 1) * 1e-6))
model("mm_scaled", "V*x/(K+x)", "V K".split(), lambda x, V, K: V * x / (K + x), (1e5, 1e7),
      lambda r: [r.uniform(1, 3) * 1e-9, r.uniform(.5, 3) * 1e6])
model("power_small", "a*x^b", "a b".split(), lambda x, a, b: a * x ** b, (1e-7, 1e-5),
      lambda r: [r.uniform(.5, 2) * 1e3, r.uniform(.5, 1.5)])
model("relu2", "relu:2", "m1 b1 m2 b2 c".split(),
      lambda x, m1, b1, m2, b2, c: np.maximum(m1 * x + b1, 0) + np.maximum(m2 * x + b2, 0) + c,
      (-2, 2), lambda r: (lambda m, k: [m[0], -m[0] * k[0], m[1], -m[1] * k[1],
                                        r.uniform(-1, 1)])(
          r.choice([-1, 1], 2) * r.uniform(.5, 2, 2), r.uniform(-1, 1, 2)), "flexible")
HOSTILE_DATA = ("outliers", "clusters", None)

LOSS_OF = {
    "mse": lambda r, d: np.mean(r ** 2),
    "mae": lambda r, d: np.mean(np.abs(r)),
    "huber": lambda r, d: np.mean(np.where(np.abs(r) <= d, .5 * r ** 2,
                                           d * (np.abs(r) - d / 2))),
}


def observe(name, x, t, noise, use_sigma, rng):
    """Noisy y at x from the truth t, and sigma (None without)."""
    f, kind = M[name][2], M[name][5]
    yt = (np.polyval([0.7, 1.3], x) if kind == "line" else f(x, *t))
    scale = np.std(yt) + abs(np.mean(yt)) * .1 + (1e-3 if name in CLASSIC else 0.0)
    sig = scale * noise * rng.uniform(.5, 2, len(x)) if use_sigma else None
    return yt + (sig if sig is not None else scale * noise) * rng.standard_normal(len(x)), sig


def make_hostile(case, rng):
    """Heavy outliers (a tenth of the points moved by 30 times the spread of y) or x in
    two or three tight clusters, for every problem of the case (``--hostile``)."""
    what = HOSTILE_DATA[rng.integers(len(HOSTILE_DATA))]
    case["hostile"] = what
    lo, hi = M[case["name"]][3]
    for pr in case["probs"]:
        if what == "clusters":
            centres = rng.uniform(lo, hi, rng.integers(2, 4))
            x = np.sort(rng.choice(centres, case["n"]) + 1e-3 * (hi - lo) * rng.standard_normal(case["n"]))
            pr["x"] = np.clip(x, lo, hi)
            pr["y"], pr["sigma"] = observe(case["name"], pr["x"], pr["truth"],
                                           case["noise"], pr["sigma"] is not None, rng)
        elif what == "outliers":
            k = max(1, case["n"] // 10)
            at = rng.choice(case["n"], k, replace=False)
            pr["y"] = pr["y"].copy()
            pr["y"][at] += 30 * (np.std(pr["y"]) + 1e-300) * rng.choice([-1, 1], k)
    if what == "clusters" and case["shared_x"]:
        for pr in case["probs"][1:]:
            pr["x"] = case["probs"][0]["x"]
            pr["y"], pr["sigma"] = observe(case["name"], pr["x"], pr["truth"],
                                           case["noise"], pr["sigma"] is not None, rng)
    return case


def make_case(rng, name, b):
    """One configuration and B problems of it."""
    expr, names, f, xr, truth, kind = M[name]
    P = len(names)
    n = int(rng.choice([P + 1, P + 2, 10, 30, 200]))
    noise = float(10 ** rng.uniform(-6, np.log10(0.3)))
    loss = str(rng.choice(["mse"] * 6 + ["huber", "mae"]))
    use_sigma = rng.random() < 0.35
    absolute = bool(use_sigma and rng.random() < .5)
    shared_x = rng.random() < .5
    starts = 3 if rng.random() < .15 else 1
    t0 = np.array(truth(rng))
    bounds, fixed = None, None
    which = rng.integers(P)
    u = rng.random()
    if u < .15:      # inactive, two-sided
        bounds = {names[which]: (t0[which] - 5 * abs(t0[which]) - 1, t0[which] + 5 * abs(t0[which]) + 1)}
    elif u < .3:     # active: cuts the truth
        bounds = {names[which]: (t0[which] + .3 * abs(t0[which]) + .05, None)}
    elif u < .4:     # one-sided inactive
        bounds = {names[which]: (None, t0[which] + abs(t0[which]) + 1)}
    elif u < .5 and P > 2:
        fixed = {names[which]: float(t0[which])}
    probs = []
    for _ in range(b):
        t = np.array(truth(rng))
        if fixed:
            t[which] = fixed[names[which]]
        x = np.linspace(*xr, n) if shared_x and not probs else (
            probs[0]["x"] if shared_x else np.sort(rng.uniform(*xr, n)))
        y, sig = observe(name, x, t, noise, use_sigma, rng)
        p0 = t * (1 + .15 * rng.standard_normal(P))
        if bounds:       # a start inside the bounds (fit_many refuses one outside)
            lo, hi = bounds[names[which]]
            lo = -np.inf if lo is None else lo
            hi = np.inf if hi is None else hi
            p0[which] = np.clip(p0[which], lo + 1e-3 * (1 + abs(lo)) if np.isfinite(lo) else lo,
                                hi - 1e-3 * (1 + abs(hi)) if np.isfinite(hi) else hi)
        probs.append(dict(x=x, y=y, sigma=sig, p0=dict(zip(names, p0)), truth=t))
    return dict(name=name, expr=expr, names=names, f=f, kind=kind, n=n, noise=noise,
                loss=loss, absolute=absolute, shared_x=shared_x, starts=starts,
                bounds=bounds, fixed=fixed, probs=probs, delta=1.0)


def free_setup(case):
    names = case["names"]
    fixed = case["fixed"] or {}
    free = [k for k in names if k not in fixed]
    lo = np.full(len(free), -np.inf)
    hi = np.full(len(free), np.inf)
    for k, (a, b) in (case["bounds"] or {}).items():
        if k in free:
            i = free.index(k)
            lo[i] = -np.inf if a is None else a
            hi[i] = np.inf if b is None else b
    return free, lo, hi


def full(case, free, q):
    d = dict(case["fixed"] or {})
    d.update(zip(free, q))
    return [d[k] for k in case["names"]]


def resid(case, pr, free, q):
    r = case["f"](pr["x"], *full(case, free, q)) - pr["y"]
    return r if pr["sigma"] is None else r / pr["sigma"]


def objective(case, pr, free, q):
    with np.errstate(all="ignore"):
        r = resid(case, pr, free, q)
    v = LOSS_OF[case["loss"]](r, case["delta"])
    return v if np.isfinite(v) else np.inf


def exact_objective(case, pr, free, q):
    """The loss in numpy's extended precision (x86's 64-bit mantissa, 2^11 times float64's):
    at a*exp(b*x)+c with a = 5614 and c = -5613 the float64 loss is uncertain at 1e-8
    relative, and a point 'lower' in float64 may be higher in fact."""
    ld = np.longdouble
    x, y = pr["x"].astype(ld), pr["y"].astype(ld)
    with np.errstate(all="ignore"):
        r = case["f"](x, *[ld(v) for v in full(case, free, np.asarray(q, float))]) - y
        if pr["sigma"] is not None:
            r = r / pr["sigma"].astype(ld)
        d = ld(case["delta"])
        v = {"mse": lambda: np.mean(r ** 2), "mae": lambda: np.mean(np.abs(r)),
             "huber": lambda: np.mean(np.where(np.abs(r) <= d, r ** 2 / 2, d * (np.abs(r) - d / 2)))
             }[case["loss"]]()
    return float(v) if np.isfinite(v) else np.inf


def polish(case, pr, free, lo, hi, q0):
    """scipy's local optimum from q0: (point, loss)."""
    q0 = np.clip(np.asarray(q0, float), lo, hi)
    loss = case["loss"]
    try:
        if loss == "mae":
            best = (q0, objective(case, pr, free, q0))
            q = q0
            for _ in range(3):
                res = so.minimize(lambda v: objective(case, pr, free, v) if
                                  np.all((v >= lo) & (v <= hi)) else np.inf, q,
                                  method="Nelder-Mead",
                                  options=dict(xatol=1e-13, fatol=1e-16, maxiter=20000,
                                               initial_simplex=None))
                q = res.x
                v = objective(case, pr, free, q)
                if v < best[1]:
                    best = (q, v)
            return best
        bounded = np.isfinite(lo).any() or np.isfinite(hi).any()
        method = "trf" if bounded or loss == "huber" or len(pr["y"]) < len(free) else "lm"
        kw = dict(loss="huber", f_scale=case["delta"]) if loss == "huber" else {}
        with np.errstate(all="ignore"):
            res = so.least_squares(lambda v: resid(case, pr, free, v), q0, bounds=(lo, hi),
                                   method=method, xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                   max_nfev=20000, **kw)
        return res.x, objective(case, pr, free, res.x)
    except Exception:
        return q0, objective(case, pr, free, q0)


FD_COND = 1e6      # beyond this condition of the scaled J, central differences (error
                   # ~1e-10) cannot give pcov to 1e-4: not compared (a dexp at 5e6 differed
                   # by 4.6e-4 from gradfit's, which an analytic Jacobian's pcov equals)


def pcov_stderr(case, pr, free, q):
    """curve_fit's standard errors at q (pcov = inv(J'J) * s^2 unless absolute_sigma), from
    central differences with a relative step (b ~ 1e-6 at x ~ 1e6); None where J'J is
    singular, "ill" where the scaled J's condition is beyond FD_COND."""
    h = 1e-6 * np.where(q != 0, np.abs(q), 1.0)
    J = np.stack([(resid(case, pr, free, q + h[i] * np.eye(len(q))[i]) -
                   resid(case, pr, free, q - h[i] * np.eye(len(q))[i])) / (2 * h[i])
                  for i in range(len(q))], 1)
    sv = np.linalg.svd(J / np.maximum(np.linalg.norm(J, axis=0), 1e-300), compute_uv=False)
    if not sv[-1] > sv[0] / FD_COND:
        return "ill"
    r = resid(case, pr, free, q)
    dof = len(r) - len(q)
    try:
        cov = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        return None
    if not case["absolute"] and dof > 0:
        cov = cov * (r @ r) / dof
    return np.sqrt(np.abs(np.diag(cov)))


def common_kwargs(case):
    kw = dict(loss=case["loss"])
    if case["loss"] != "mse":     # an IRLS step can take 0.3 s on a degenerate problem
        kw["steps"] = 100
    if case["bounds"]:
        kw["bounds"] = case["bounds"]
    if case["starts"] > 1:
        kw["starts"] = case["starts"]
    if case["absolute"]:
        kw["absolute_sigma"] = True
    return kw


def run_case(case, rng, tally, log, verbose):
    names, B = case["names"], len(case["probs"])
    free, lo, hi = free_setup(case)
    kw = common_kwargs(case)
    singles = []
    for pr in case["probs"]:
        p0 = {k: v for k, v in pr["p0"].items() if k not in (case["fixed"] or {})}
        try:
            r = gradfit.fit(case["expr"], pr["x"], pr["y"], sigma=pr["sigma"], p0=p0,
                            fixed=case["fixed"], time_limit=5, **kw)
            if "time limit" in r.message:    # a slow fit (see the report): not compared
                tally["fit-time-limit"] += 1
                log("fit-time-limit", case, 0, r.message[:200])
        except Exception as e:   # noqa: BLE001
            r = None
            log("fit-raised", case, 0, repr(e)[:200])
            tally["fit-raised"] += 1
        singles.append(r)
    # fit_many: float64 array (shared or per-problem x) or ragged long table, and float32
    p0m = {k: np.array([pr["p0"][k] for pr in case["probs"]]) for k in names
           if k not in (case["fixed"] or {})}
    sig = None if case["probs"][0]["sigma"] is None else np.stack([p["sigma"] for p in case["probs"]])
    Y = np.stack([p["y"] for p in case["probs"]])
    X = case["probs"][0]["x"] if case["shared_x"] else np.stack([p["x"] for p in case["probs"]])
    manys = {}
    for label, dtype in (("f64", "float64"), ("f32", "float32")):
        try:
            manys[label] = gradfit.fit_many(case["expr"], X, Y, sigma=sig, p0=p0m,
                                            fixed=case["fixed"], dtype=dtype, **kw)
        except Exception as e:   # noqa: BLE001
            log("many-raised", case, 0, f"{label} {e!r}"[:200])
            tally["many-raised"] += 1
    if not case["shared_x"] and rng.random() < .5:   # a ragged long table: drop some points
        keep = [np.sort(rng.choice(case["n"], rng.integers(len(free) + 1, case["n"] + 1),
                                   replace=False)) for _ in range(B)]
        ragged = [dict(pr, x=pr["x"][k], y=pr["y"][k],
                       sigma=None if pr["sigma"] is None else pr["sigma"][k])
                  for pr, k in zip(case["probs"], keep)]
        gx = np.concatenate([p["x"] for p in ragged])
        gy = np.concatenate([p["y"] for p in ragged])
        gg = np.concatenate([np.full(len(p["x"]), i) for i, p in enumerate(ragged)])
        gs = None if sig is None else np.concatenate([p["sigma"] for p in ragged])
        try:
            rm = gradfit.fit_many(case["expr"], gx, gy, group=gg, sigma=gs, p0=p0m,
                                  fixed=case["fixed"], **kw)
            for i, pr in enumerate(ragged):
                p0 = {k: v for k, v in pr["p0"].items() if k not in (case["fixed"] or {})}
                r = gradfit.fit(case["expr"], pr["x"], pr["y"], sigma=pr["sigma"], p0=p0,
                                fixed=case["fixed"], time_limit=5, **kw)
                if "time limit" in r.message:
                    continue
                compare(case, rm, i, r, "ragged", 1e-8, tally, log)
                check_single(case, pr, r, free, lo, hi, tally, log, "ragged-fit", i)
        except Exception as e:   # noqa: BLE001
            log("many-raised", case, 0, f"ragged {e!r}"[:200])
            tally["many-raised"] += 1
    for i, (pr, r) in enumerate(zip(case["probs"], singles)):
        if r is None or "time limit" in r.message:
            continue
        check_single(case, pr, r, free, lo, hi, tally, log, "fit", i)
        for label, m in manys.items():
            compare(case, m, i, r, label, 1e-8 if label == "f64" else 1e-3, tally, log)
            q = np.array([m.params[k][i] for k in free])
            if label == "f64" and m.converged[i]:
                check_point(case, pr, q, float(m.loss[i]), free, lo, hi, tally, log, "many", i)
            elif m.converged[i] and case["kind"] == "redundant" and \
                    still_redundant(case, free, q, lo, hi, 1e-6):    # float32: the claim only
                tally["wrong-converged (many-f32: redundant called converged)"] += 1
                log("wrong-converged", case, i, f"many-f32 redundant model converged q={q}")
    tally["problems"] += B


def still_redundant(case, free, q, lo, hi, tol=1e-9):
    """A redundant model (the data determine only a combination of a and b) stays so
    unless a or b is fixed or held on a bound (within ``tol``, relative; float32 holds a
    bound only to its own rounding): then the others are determined."""
    for k in ("a", "b"):
        if k not in free:
            return False
        j = free.index(k)
        if min(abs(q[j] - lo[j]), abs(q[j] - hi[j])) <= tol * max(1.0, abs(q[j])):
            return False
    return True


def check_point(case, pr, q, loss, free, lo, hi, tally, log, who, i=0):
    if case["kind"] == "redundant" and still_redundant(case, free, q, lo, hi):
        tally[f"wrong-converged ({who}: redundant called converged)"] += 1
        log("wrong-converged", case, i, f"{who} redundant model converged q={q}")
        return
    if np.max(np.abs(q)) > 1e6 * max(1.0, np.max(np.abs(pr["truth"]))):
        tally[f"wrong-converged ({who}: ran off)"] += 1
        log("wrong-converged", case, i, f"{who} ran off q={q}")
        return
    mine = objective(case, pr, free, q)
    qp, vp = polish(case, pr, free, lo, hi, q)
    floor = 1e-8 * mine + 1e-300
    if case["loss"] == "mae":
        floor = 1e-7 * mine          # Nelder-Mead's own noise on a kink
    if vp < mine - floor and exact_objective(case, pr, free, qp) < \
            exact_objective(case, pr, free, q) - floor:
        tally[f"wrong-converged ({who}: not a local min)"] += 1
        log("wrong-converged", case, i, f"{who} loss {mine:.12g} polished {vp:.12g} "
            f"rel {(mine - vp) / mine:.2e} q={q} qp={qp}")


def check_single(case, pr, r, free, lo, hi, tally, log, who, i=0):
    if not r.converged:
        tally[f"not-converged ({who})"] += 1
        if case["kind"] == "ok" and r.reason not in ("starts",):
            tally[f"not-converged ok-model ({who}: {r.reason})"] += 1
        return
    tally[f"converged ({who})"] += 1
    q = np.array([r.params[k] for k in free])
    check_point(case, pr, q, r.loss, free, lo, hi, tally, log, who, i)
    # a better optimum elsewhere: info only
    if case["loss"] == "mse" and case["kind"] == "ok":
        best = objective(case, pr, free, q)
        for s in range(3):
            q0 = np.array(full(case, free, pr["truth"]))[[case["names"].index(k) for k in free]]
            q0 = q0 * (1 + .3 * s * np.random.default_rng(s).standard_normal(len(q0)))
            qv, v = polish(case, pr, free, lo, hi, q0)
            if v < best * (1 - 1e-6):
                tally[f"better-elsewhere ({who})"] += 1
                break
    # stderr vs curve_fit's pcov at the same point (mse, no active bound)
    if case["loss"] == "mse" and case["kind"] == "ok" and not r.at_bound and len(pr["y"]) > len(free):
        se = pcov_stderr(case, pr, free, q)
        if isinstance(se, str):
            tally[f"stderr-not-checked (scaled J's condition > {FD_COND:g})"] += 1
        elif se is not None:
            mine = np.array([r.stderr.get(k, np.nan) for k in free])
            rel = np.abs(mine - se) / np.maximum(se, 1e-300)
            if not np.all(rel < 1e-4):
                tally[f"stderr-mismatch ({who})"] += 1
                log("stderr", case, i, f"{who} gradfit {mine} pcov {se}")


def compare(case, m, i, r, label, tol, tally, log):
    if bool(m.converged[i]) != bool(r.converged):
        tally[f"many!=fit converged flag ({label})"] += 1
        log("many!=fit", case, i, f"{label} many {m.reason[i]} ({m.message[i]}) "
            f"fit {r.reason} ({r.message})"[:600])
        return
    if not r.converged:
        return
    worst = 0.0
    for k in case["names"]:
        a, b = float(m.params[k][i]), r.params[k]
        se = r.stderr.get(k, 0.0) if r.stderr else 0.0
        se = 0.0 if not np.isfinite(se) else se
        scale = max(abs(a), abs(b), se if label == "f32" else 0.0, 1e-300)
        worst = max(worst, abs(a - b) / scale)
    if not worst <= tol:
        tally[f"many!=fit params ({label})"] += 1
        log("many!=fit", case, i, f"{label} rel {worst:.2e} many {m.reason[i]} fit {r.reason} "
            f"many {[float(m.params[k][i]) for k in case['names']]} "
            f"fit {[r.params[k] for k in case['names']]} loss many {float(m.loss[i]):.15g} fit {r.loss:.15g}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--models", default=None, help="default: the classic families, "
                    "and the hostile ones with --hostile")
    ap.add_argument("--hostile", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--log", default="/tmp/sweep_log.txt")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    tally = collections.Counter()
    out = open(a.log, "w")

    def log(kind, case, i, text):
        desc = (f"[{kind}] {case['name']} n={case['n']} noise={case['noise']:.2g} "
                f"loss={case['loss']} sigma={case['probs'][0]['sigma'] is not None} "
                f"abs={case['absolute']} bounds={case['bounds']} fixed={case['fixed']} "
                f"starts={case['starts']} shared_x={case['shared_x']} seed={case['seed']} "
                f"hostile={case.get('hostile')} "
                f"i={i}: {text}")
        out.write(desc + "\n")
        out.flush()
        if a.verbose:
            print(desc)

    models = a.models.split(",") if a.models else list(M if a.hostile else CLASSIC)
    t0 = time.time()
    for c in range(a.cases):
        name = models[c % len(models)]
        case = make_case(np.random.default_rng([a.seed, c]), name, a.batch)
        if a.hostile:
            case = make_hostile(case, np.random.default_rng([a.seed, c, 2]))
        case["seed"] = c
        t1 = time.time()
        run_case(case, np.random.default_rng([a.seed, c, 1]), tally, log, a.verbose)
        if a.verbose or time.time() - t1 > 20:
            print(f"case {c} {name} loss={case['loss']} n={case['n']}: "
                  f"{time.time() - t1:.1f} s", flush=True)
    print(f"{a.cases} cases, {tally['problems']} problems, {time.time() - t0:.0f} s")
    for k in sorted(tally):
        print(f"  {k}: {tally[k]}")


if __name__ == "__main__":
    main()
