"""The batched SPD solves of one LM iteration, and its damping, against numpy's oracles."""
from __future__ import annotations

import numpy as np
import torch

from gradfit.batch_lm import _lm_parameter
from gradfit.spd import Lapack, Unrolled, factor, moments, solve_spd


def spd_batch(k, F, seed=0):
    rng = np.random.default_rng(seed)
    j = rng.standard_normal((k, 3 * F, F)) * rng.uniform(0.1, 10, (k, 1, F))
    return torch.tensor(j.transpose(0, 2, 1) @ j), torch.tensor(rng.standard_normal((k, F)))


def test_both_factorisations_solve_like_numpy():
    a, b = spd_batch(20, 5)
    want = np.linalg.solve(a.numpy(), b.numpy()[..., None])[..., 0]
    for f in (Unrolled(a), Lapack(a)):
        assert f.ok.all()
        np.testing.assert_allclose(f.solve(b).numpy(), want, rtol=1e-9)
        # |L^-1 b|^2 = b^T A^-1 b
        np.testing.assert_allclose(f.half(b).square().sum(-1).numpy(),
                                   np.einsum("ki,ki->k", b.numpy(), want), rtol=1e-9)
    assert isinstance(factor(a), Unrolled) and isinstance(factor(a[:2]), Lapack)


def test_not_positive_definite_is_flagged_never_nan():
    a, b = spd_batch(20, 3)
    a[4] = -a[4]
    y, ok = solve_spd(a, b)
    assert not ok[4] and ok[torch.arange(20) != 4].all() and torch.isfinite(y).all()
    assert (y[4] == 0).all()


def test_moments_are_the_gram_matrix_of_the_block():
    jr = torch.tensor(np.random.default_rng(1).standard_normal((3, 4, 50)))
    for block in (jr, jr.repeat(200, 1, 1)):          # elementwise and matmul paths
        m = moments(block)
        np.testing.assert_allclose(m.numpy(), (block @ block.transpose(-1, -2)).numpy(),
                                   rtol=1e-12)


def test_damping_fits_the_step_to_the_trust_region():
    a, g = spd_batch(30, 4, seed=3)
    y_gn = -torch.linalg.solve(a, g)
    gn_norm = torch.linalg.vector_norm(y_gn, dim=-1)
    delta = gn_norm * torch.linspace(0.01, 0.8, 30, dtype=a.dtype)
    lam, y = _lm_parameter(a, g, y_gn, gn_norm, torch.ones(30, dtype=torch.bool), delta,
                           torch.zeros(30, dtype=a.dtype))
    ynorm = torch.linalg.vector_norm(y, dim=-1)
    assert (lam > 0).all() and ((ynorm - delta).abs() <= 0.1 * delta).all()
    # y solves (A + lam I) y = -g
    eye = torch.eye(4, dtype=a.dtype)
    torch.testing.assert_close(((a + lam[:, None, None] * eye) @ y.unsqueeze(-1)).squeeze(-1),
                               -g, rtol=1e-8, atol=1e-10)


def test_numpy_cholesky_solves_like_lapack_and_flags_what_is_not_definite():
    from gradfit.spd import NumpyCholesky
    a, b = spd_batch(6, 4, seed=5)
    a[2] = -a[2]                                  # not positive definite
    a[4, 1, 1] = float("nan")                     # not finite (LAPACK lets NaN through)
    f, ref = NumpyCholesky(a.numpy()), Lapack(a)
    assert f.ok.tolist() == [True, True, False, True, False, True]
    good = f.ok
    np.testing.assert_allclose(f.solve(b.numpy())[good], ref.solve(b)[good].numpy(), rtol=1e-10)
    np.testing.assert_allclose(f.half(b.numpy())[good], ref.half(b)[good].numpy(), rtol=1e-10)
    assert np.isfinite(f.solve(b.numpy())).all()  # garbage the callers mask, never NaN


def test_damping_is_the_same_on_numpy_arrays():
    from gradfit.array_ns import NUMPY
    a, g = spd_batch(5, 3, seed=7)
    y_gn = -torch.linalg.solve(a, g)
    gn_norm = torch.linalg.vector_norm(y_gn, dim=-1)
    delta, full, lam0 = 0.3 * gn_norm, torch.ones(5, dtype=torch.bool), torch.zeros(5, dtype=a.dtype)
    lam_t, y_t = _lm_parameter(a, g, y_gn, gn_norm, full, delta, lam0)
    lam_n, y_n = _lm_parameter(*(v.numpy() for v in (a, g, y_gn, gn_norm, full, delta, lam0)),
                               NUMPY)
    np.testing.assert_allclose(lam_n, lam_t.numpy(), rtol=1e-10)
    np.testing.assert_allclose(y_n, y_t.numpy(), rtol=1e-10)
