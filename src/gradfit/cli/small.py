"""The small commands: ``gradfit lesson`` (the lesson replayed) and ``gradfit eval`` (the
loss and its gradient at given parameters)."""
from __future__ import annotations

import math
import sys

from .exits import EXIT_OK
from .inputs import add_data_args, load
from .parsing import parse_assignments, write_json

LESSON_EXAMPLES = """examples:
  gradfit lesson                      # the lesson's numbers, replayed with gradfit
  gradfit lesson --pictures figures   # and its pictures, as PNG files in figures/
"""
EVAL_EXAMPLES = """examples:
  gradfit eval lesson --model "a*x^2 + b*x + c" --params a=1.1,b=1.1,c=1.1 --loss mae
"""


def add_lesson_parser(sub, fmt) -> None:
    lesson = sub.add_parser("lesson", help="replay the lesson 'deep learning is just graph "
                            "plotting'", epilog=LESSON_EXAMPLES, formatter_class=fmt)
    lesson.add_argument("--pictures", metavar="DIR",
                        help="also write the lesson's pictures as PNG files into DIR")
    lesson.set_defaults(func=cmd_lesson)


def add_eval_parser(sub, fmt) -> None:
    evalp = sub.add_parser("eval", help="the loss and its gradient at given parameters",
                           epilog=EVAL_EXAMPLES, formatter_class=fmt)
    add_data_args(evalp)
    evalp.add_argument("--params", required=True, help="parameter values, e.g. a=1.1,b=1.1,c=1.1")
    evalp.set_defaults(func=cmd_eval)


def cmd_lesson(args) -> int:
    from ..lesson import replay
    pictures = None
    if args.pictures:
        from .pictures import lesson_pictures
        pictures = lesson_pictures(args.pictures)
    for line in replay(pictures):
        print(line, flush=True)
    return EXIT_OK


def cmd_eval(args) -> int:
    from ..fit import loss_and_grad
    data = load(args)
    params = parse_assignments(args.params, "--params")
    value, grad = loss_and_grad(args.model, data.x, data.y, params, sigma=data.sigma,
                                loss=args.loss, delta=args.delta, inputs=data.x_names)
    if args.json:
        write_json(args.json, {"loss": value, "loss_name": args.loss, "params": params,
                               "grad": grad})
    if not math.isfinite(value):        # printed as it is, but never without a word
        print(f"gradfit: note: the {args.loss} is not finite at these parameters: the model "
              "overflows there, or is undefined at a data point (a division by zero, the log "
              "or square root of a negative number)", file=sys.stderr)
    if args.json != "-":
        width = max(len(n) for n in grad)
        print(f"{args.loss} = {value:.6g}")
        print("gradient:")
        for name, g in grad.items():
            print(f"  {name:<{width}}  {g: .6g}")
    return EXIT_OK
