"""Pictures of gradfit's fits: matplotlib, headless (an Agg canvas, no pyplot, no display).

Every picture function takes an optional matplotlib ``Axes`` (``ax=``) and returns the
``Figure``, so it shows inline in a notebook and composes into figures of your own::

    import gradfit, gradfit.plots
    d = gradfit.lesson_data()
    r = gradfit.fit("a*x^2 + b*x + c", d.x, d.y, optimizer="gd", lr=0.05, steps=200)
    gradfit.plots.fit(r, d).savefig("fit.png")
    gradfit.plots.landscape(r, d, params=("a", "b")).savefig("landscape.png")

The numbers come from the core (``gradfit.landscape``); this package only draws them.
``gradfit`` itself never imports it, so the core runs without matplotlib.
"""
from .animation import animate, frame_steps
from .common import save
from .lesson_plots import lesson_figures
from .rates import lr_find, lr_sweep
from .relu import relus
from .surface import compare_losses, draw_grid, draw_slice, landscape
# after the submodule ``surface`` (the landscapes): importing a submodule sets the package's
# attribute of its name, which had made ``gradfit.plots.surface`` that module, not this
# function ("'module' object is not callable"). The submodule is loaded above, once, so no
# later ``from gradfit.plots.surface import ...`` sets it again.
from .curves import fit, loss_curve, residuals, surface

__all__ = ["fit", "residuals", "loss_curve", "surface", "animate", "frame_steps", "landscape",
           "draw_grid", "draw_slice", "compare_losses", "lr_sweep", "lr_find", "relus",
           "lesson_figures", "save"]
