"""The active-set finish and an inner fit that walked (LM's WALK or RUNAWAY: a finite end of
lower loss, not a breakdown). A 4PL flat well's unbounded inner fit slid top and ec50 while
hill ran past its bound; the finish had then refitted in the box, where hill sat at the
pole of its change of variables and LM crawled 800 steps to ``max_steps``. Now the bound
the walk crossed is held, as for a fit that ended, and a walk that goes on in the box
ends the finish, failed, with the walk's words. The protocol is driven here by scripted
inner fits (the finish's own oracle: what it asks for next)."""
from gradfit.active_set import InnerEnd, drive, refinement
from gradfit.lm_codes import WALK, message

BOUNDS = {"hill": (0.1, 10.0)}
NAMES = ("top", "ec50", "hill")
WALKED = "the data do not determine top, ec50: " + message(WALK, {})


def test_a_walk_across_a_bound_holds_that_bound_then_fails_with_the_walk():
    asked = []

    def solve(p0, fixed, bounds):
        asked.append((dict(fixed), dict(bounds)))
        if not fixed:               # free: hill runs past 10 while top slides
            return InnerEnd({"top": -60.0, "ec50": 130.0, "hill": 16.0}, 200, "failed", WALKED)
        return InnerEnd({"top": -90.0, "ec50": 140.0, "hill": fixed["hill"]}, 100, "failed",
                        WALKED)

    start = {"top": -26.0, "ec50": 142.0, "hill": 9.999}
    end = drive(refinement(NAMES, BOUNDS, {}, start, lambda v, a: {n: 1.0 for n in a}), solve)
    # first free, then hill held at the bound it crossed (not the whole box), then the box
    assert asked[0] == ({}, {})
    assert asked[1] == ({"hill": 10.0}, {})
    assert asked[2] == ({"hill": 10.0}, {})       # no other bounds left to hold
    assert len(asked) == 3
    assert not end.certified and end.inner.message == WALKED
    assert end.steps == 400


def test_a_breakdown_still_refits_in_the_box():
    asked = []

    def solve(p0, fixed, bounds):
        asked.append(dict(bounds))
        if not bounds:
            return InnerEnd({"top": float("nan"), "ec50": 1.0, "hill": 1.0}, 5, "failed",
                            "the residuals or their derivatives are not finite here")
        return InnerEnd({"top": 1.0, "ec50": 2.0, "hill": 3.0}, 10, "xtol", "done")

    start = {"top": 1.0, "ec50": 2.0, "hill": 3.0}
    end = drive(refinement(NAMES, BOUNDS, {}, start, lambda v, a: {n: 1.0 for n in a}), solve)
    assert asked == [{}, BOUNDS] and end.certified
