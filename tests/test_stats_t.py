"""Student's t quantile (gradfit.stats, no scipy in the core) against scipy."""
import pytest

from gradfit.stats import incomplete_beta, student_t_quantile, t_tail

scipy_stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")


@pytest.mark.parametrize("dof", [0.5, 1, 2, 3, 5, 8, 17, 30, 100, 1000, 1e5])
def test_quantile_matches_scipy_from_the_centre_to_the_tails(dof):
    for p in (0.5000001, 0.51, 0.6, 0.75, 0.7500001, 0.8413, 0.9, 0.975, 0.995, 0.9999,
              0.3, 0.025):
        want = scipy_stats.t.ppf(p, dof)
        assert student_t_quantile(p, dof) == pytest.approx(want, rel=1e-8), p


def test_tail_and_incomplete_beta_match_scipy():
    for t, dof in [(0.1, 3), (2.2, 10), (40.0, 2), (1e-6, 50), (5.0, 1e4)]:
        assert t_tail(t, dof) == pytest.approx(2 * scipy_stats.t.sf(t, dof), rel=1e-10)
    for a, b, x in [(0.5, 2.0, 0.3), (5.0, 0.5, 0.99), (50.0, 0.5, 0.9), (1.0, 1.0, 0.25)]:
        assert incomplete_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-12)


def test_bad_arguments_are_refused():
    for p, dof in [(0, 3), (1, 3), (0.5, 0)]:
        with pytest.raises(ValueError):
            student_t_quantile(p, dof)
