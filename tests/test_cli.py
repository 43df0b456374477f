"""The command line as a user runs it: output, JSON, exit codes, and bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gradfit.cli import main

LESSON_LINES = """quad_mae([1.1, 1.1, 1.1]) = 2.4219
grad = [-1.3529, -0.0316, -0.5000]
loss=2.40
step=0; loss=2.40
step=1; loss=2.36
step=2; loss=2.30
step=3; loss=2.21
step=4; loss=2.11
step=5; loss=1.98
step=6; loss=1.85
step=7; loss=1.72
step=8; loss=1.58
step=9; loss=1.46""".splitlines()


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_lesson_prints_the_lessons_numbers_in_order(capsys):
    code, out, _ = run(capsys, "lesson")
    assert code == 0
    lines = out.splitlines()
    at = [lines.index(line) for line in LESSON_LINES[:4]]
    assert at == sorted(at)
    block = lines[at[2]:at[2] + 13]
    block = [lines[at[0]], lines[at[1]]] + [l for l in lines[at[2]:] if l.startswith(("loss=", "step="))][:11]
    assert block == LESSON_LINES
    # then the same ten steps with the gradient zeroed, and why they differ
    zeroed = [l for l in lines if l.startswith("step=")][10:20]
    assert len(zeroed) == 10 and zeroed[0] == "step=0; loss=2.40" and zeroed[9] != "step=9; loss=1.46"
    assert "never zeroes the gradient" in out


def test_fit_json_stdout_is_only_the_result(capsys):
    code, out, err = run(capsys, "fit", "lesson", "--model", "a*x^2 + b*x + c",
                         "--optimizer", "lbfgs", "--steps", "100", "--json", "-")
    assert code == 0
    d = json.loads(out)
    for key in ("params", "loss", "steps", "converged", "reason", "stderr"):
        assert key in d
    assert set(d["params"]) == {"a", "b", "c"} and set(d["stderr"]) == {"a", "b", "c"}
    c0, c1, c2 = np.polynomial.polynomial.polyfit(*_lesson_xy(), 2)
    assert d["params"]["a"] == pytest.approx(c2, rel=1e-6)


def _lesson_xy():
    from gradfit.data import lesson_data
    d = lesson_data()
    return d.x, d.y


def test_fit_report_and_json_file(capsys, tmp_path):
    path = tmp_path / "r.json"
    code, out, _ = run(capsys, "fit", "lesson", "--model", "poly:2", "--loss", "mae",
                       "--optimizer", "gd", "--lr", "0.01", "--steps", "50", "--p0",
                       "c0=1.1,c1=1.1,c2=1.1", "--json", str(path))
    assert code == 1 and "c2" in out and "mae" in out      # 50 gd steps: not converged
    d = json.loads(path.read_text())
    assert d["steps"] == 50 and len(d["history"]) == 51 and d["stderr"] is None


def test_eval_gives_the_lessons_gradient(capsys):
    code, out, _ = run(capsys, "eval", "lesson", "--model", "a*x^2 + b*x + c",
                       "--params", "a=1.1,b=1.1,c=1.1", "--loss", "mae", "--json", "-")
    d = json.loads(out)
    assert code == 0 and round(d["loss"], 4) == 2.4219
    assert [round(d["grad"][k], 4) for k in "abc"] == [-1.3529, -0.0316, -0.5]


def test_csv_with_named_columns_and_sigma(capsys, tmp_path):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4, 30)
    s = np.full(30, 0.05)
    sig = 3 * np.exp(-0.7 * t) + 0.2 + rng.normal(0, s)
    path = tmp_path / "decay.csv"
    path.write_text("time,signal,err\n" + "\n".join(f"{a},{b},{c}" for a, b, c in zip(t, sig, s)))
    code, out, err = run(capsys, "fit", str(path), "--x", "time", "--y", "signal", "--sigma", "err",
                         "--model", "A*exp(-k*time) + C", "--optimizer", "lbfgs", "--steps", "200",
                         "--json", "-")
    assert code == 0, err
    p = json.loads(out)["params"]
    assert p["A"] == pytest.approx(3, rel=0.05) and p["k"] == pytest.approx(0.7, rel=0.05)


def test_a_model_in_x_reads_the_one_named_column_as_x(capsys, tmp_path):
    # --x time with a model written in x: the column is x (as fit_many's data= and
    # --group do), not a parameter named x
    t = np.linspace(0, 4, 30)
    path = tmp_path / "line.csv"
    path.write_text("time,signal\n" + "\n".join(f"{a},{2 * a + 1 + 0.01 * np.sin(7 * a)}"
                                                 for a in t))
    outs = []
    for model in ("a*time + b", "a*x + b"):
        code, out, err = run(capsys, "fit", str(path), "--x", "time", "--y", "signal",
                             "--model", model, "--json", "-")
        assert code == 0, err
        outs.append(json.loads(out)["params"])
    assert outs[0] == outs[1] and sorted(outs[1]) == ["a", "b"]


def test_diverged_fit_exits_1_with_advice(capsys):
    code, out, err = run(capsys, "fit", "lesson", "--model", "a*x^2+b*x+c", "--optimizer", "gd",
                         "--lr", "1", "--loss", "mse", "--steps", "300")
    assert code == 1 and "diverged" in err and "smaller learning rate" in err


def test_step_limit_is_not_convergence(capsys):
    code, out, err = run(capsys, "fit", "lesson", "--model", "a*x^2+b*x+c", "--optimizer", "gd",
                         "--steps", "20")
    assert code == 1 and "step limit" in err and "--steps" in err and "a " in out


def _csv(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("make_args,message", [
    (lambda t: ["fit", str(t / "nope.csv"), "--model", "a*x"], "nope.csv"),
    (lambda t: ["fit", _csv(t, "x,y\n1,2\n2,3\n"), "--y", "z", "--model", "a*x"], "no column named 'z'"),
    (lambda t: ["fit", _csv(t, "x,y\n1,2\n2,abc\n"), "--model", "a*x"], "row 3, column 'y'"),
    (lambda t: ["fit", _csv(t, "x,y\n1,2\n2,nan\n3,4\n"), "--model", "a*x"], "--drop-nan"),
    (lambda t: ["fit", _csv(t, ""), "--model", "a*x"], "empty file"),
    (lambda t: ["fit", _csv(t, "x,y\n1,2\n2,3\n"), "--model", "a*x^2+b*x+c"], "2 points but 3 parameters"),
    (lambda t: ["fit", "lesson", "--model", "a*x + foo(x)"], "unknown function 'foo' at column 7"),
    (lambda t: ["fit", "lesson", "--model", "__import__('os').system('touch /tmp/gradfit_x')"],
     "unknown function '__import__'"),
    (lambda t: ["fit", "lesson", "--model", "a*x", "--p0", "a=oops"], "--p0"),
    (lambda t: ["fit", "lesson", "--model", "a*x", "--p0", "z=1"], "unknown parameter 'z'"),
    (lambda t: ["fit", "lesson", "--model", "a*x", "--lr", "-1"], "learning rate"),
    (lambda t: ["fit", "lesson", "--model", "relu:-2"], "relu:K"),
    (lambda t: ["eval", "lesson", "--model", "a*x", "--params", "b=1"], "do not match"),
    (lambda t: ["fit", "lesson", "--model", "a*x", "--optimizer", "adam", "--momentum", "0.9"],
     "does not take momentum"),
])
def test_bad_input_exits_2_with_one_clear_line(capsys, tmp_path, make_args, message):
    code, out, err = run(capsys, *make_args(tmp_path))
    assert code == 2
    assert message in err and err.startswith("gradfit: error:") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_drop_nan_says_how_many(capsys, tmp_path):
    path = _csv(tmp_path, "x,y\n1,2\n2,nan\n3,4\n4,\n5,6\n")
    code, out, err = run(capsys, "fit", path, "--model", "a*x+b", "--drop-nan", "--optimizer",
                         "lbfgs", "--steps", "50")
    assert code == 0 and "dropped 2 row" in err
    # with --json - stderr stays quiet: the count is in the JSON (it had been nowhere)
    code, out, err = run(capsys, "fit", path, "--model", "a*x+b", "--drop-nan", "--json", "-")
    got = json.loads(out)
    assert code == 0 and err == "" and got["dropped_rows"] == 2 and got["n_points"] == 3
    clean = _csv(tmp_path, "x,y\n1,2\n3,4\n5,6\n", name="clean.csv")
    code, out, _ = run(capsys, "fit", clean, "--model", "a*x+b", "--json", "-")
    assert code == 0 and "dropped_rows" not in json.loads(out)


def test_real_process_exit_codes_and_no_traceback(tmp_path):
    exe = [sys.executable, "-m", "gradfit.cli"]
    bad = subprocess.run(exe + ["fit", str(tmp_path / "missing.csv"), "--model", "a*x"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "missing.csv" in bad.stderr
    usage = subprocess.run(exe + ["fit", "lesson"], capture_output=True, text=True)
    assert usage.returncode == 2 and "--model" in usage.stderr
    ok = subprocess.run(exe + ["fit", "lesson", "--model", "poly:1", "--quiet"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_output_that_cannot_be_written_is_exit_2_saying_so():
    # a full disk was "internal error: OSError" (exit 70); a closed stdout lost --json -
    # with exit 0
    exe = [sys.executable, "-m", "gradfit.cli", "fit", "lesson", "--model", "poly:1",
           "--json", "-"]
    with open("/dev/full", "w") as full:
        r = subprocess.run(exe, stdout=full, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot write the output: No space left on device" in r.stderr
    r = subprocess.run(exe, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       pass_fds=(), preexec_fn=lambda: os.close(1))
    assert r.returncode == 2 and "standard output is closed" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_help_has_examples():
    for cmd in ("fit", "eval", "lesson"):
        out = subprocess.run([sys.executable, "-m", "gradfit.cli", cmd, "--help"],
                             capture_output=True, text=True).stdout
        assert "examples:" in out


def test_a_device_the_machine_lacks_is_bad_input(capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, out, err = run(capsys, "fit", "lesson", "--model", "a*x", "--device", "cuda")
    assert code == 2 and "not available" in err and "--device cpu" in err


def test_help_documents_every_exit_code():
    from gradfit.cli import EXIT_CODES, build_parser
    out = build_parser().format_help()
    assert set(EXIT_CODES) == {0, 1, 2, 3, 70, 130, 141}
    for code in EXIT_CODES:
        assert f"\n  {code:<5}" in out


def test_serve_on_a_port_in_use_says_so_with_its_own_code_and_no_address_first():
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "gradfit.cli", "serve", "--port", str(port)],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and out.stdout == ""
    assert out.stderr.startswith(f"gradfit: error: cannot listen on 127.0.0.1:{port}")
    assert "in use" in out.stderr and "--port" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_an_internal_error_has_its_own_code(capsys, monkeypatch):
    import gradfit.cli as cli
    monkeypatch.setattr(cli, "cmd_eval", lambda args: 1 / 0)
    monkeypatch.delenv("GRADFIT_DEBUG", raising=False)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_eval(parser(), cli.cmd_eval))
    code = cli.main(["eval", "lesson", "--model", "a*x", "--params", "a=1"])
    assert code == 70 and "internal error: ZeroDivisionError" in capsys.readouterr().err


def _with_eval(parser, func):
    for action in parser._subparsers._group_actions:
        action.choices["eval"].set_defaults(func=func)
    return parser


def test_a_reader_that_goes_away_is_not_an_internal_error():
    """``gradfit fit ... | head -1``: the reader closes the pipe; gradfit stops quietly with
    141 (as cat does), not with "internal error"."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "gradfit.cli", "fit", "lesson", "--model",
                             "a*x^2+b*x+c"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()              # before gradfit has written anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "internal error" not in err and "Traceback" not in err


def test_a_model_that_names_the_fitted_column_is_a_usage_error(capsys, tmp_path):
    # 'a*y+b' had fitted y as a third parameter and failed (exit 1)
    path = _csv(tmp_path, "x,y\n1,2\n2,4\n3,7\n4,8\n")
    code, out, err = run(capsys, "fit", path, "--model", "a*y+b")
    assert code == 2 and "the model names 'y', the column being fitted" in err
    assert "expected a model of the input column(s) x" in err
    code, out, err = run(capsys, "fit", path, "--model", "a*x+b", "--quiet")
    assert code == 0


def test_an_option_of_zero_is_checked_not_dropped(capsys):
    # --batch-size 0 was dropped (0 == False) and the fit ran full-batch, while -1 was refused
    for bad in ("0", "-1"):
        code, out, err = run(capsys, "fit", "lesson", "--model", "a*x+b", "--optimizer", "sgd",
                             "--batch-size", bad)
        assert code == 2 and "bad batch size: expected a whole number 1.." in err
    code, out, err = run(capsys, "fit", "lesson", "--model", "a*x+b", "--optimizer",
                         "momentum", "--momentum", "0", "--lr", "0.01", "--steps", "5", "-q")
    assert code in (0, 1) and "error" not in err


@pytest.mark.parametrize("argv, words", [
    (["fit", "lesson", "--model", "a*x+b", "--group", "g"], "built-in dataset, one series"),
    (["fit", "lesson", "--model", "a*x+b", "--x", "nope"], "its columns are fixed"),
    (["fit", "lesson", "--model", "a*x+b", "--out", "never.csv"], "--out writes the table of"),
    (["fit", "lesson", "--model", "a*x+b", "--fix", "a=1", "--bounds", "a=2:3"],
     "'a' is fixed at 1, outside its bounds 2..3"),
])
def test_options_that_would_be_ignored_are_usage_errors(capsys, tmp_path, monkeypatch, argv,
                                                        words):
    # each had been ignored without a word (--group on a built-in: 'file not found')
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and words in err and not (tmp_path / "never.csv").exists()


def test_a_landscape_with_no_finite_loss_and_an_overflowing_span_are_usage_errors(capsys,
                                                                                  tmp_path):
    # an all-inf picture with exit 0 and numpy's warnings; span 1e308 crashed (exit 70)
    zero = _csv(tmp_path, "x,y\n0,2\n1,4\n2,7\n3,8\n")
    out = str(tmp_path / "l.png")
    code, _, err = run(capsys, "landscape", zero, "--model", "a/x+b", "--params", "a,b",
                       "--out", out)
    assert code == 2 and "no finite loss to draw" in err and "x = 0" in err
    assert len(err.strip().splitlines()) == 1
    good = _csv(tmp_path, "x,y\n1,2\n2,4\n3,7\n4,8\n", "g.csv")
    code, _, err = run(capsys, "landscape", good, "--model", "a*x+b", "--params", "a,b",
                       "--out", out, "--span", "1e308")
    assert code == 2 and "a range whose width is a finite number" in err


def test_data_from_standard_input(tmp_path):
    # '-' had been "no built-in dataset or file named '-'"
    exe = [sys.executable, "-m", "gradfit.cli", "fit", "-", "--model", "a*x+b", "--json", "-"]
    text = "x,y\n0,1\n1,3.1\n2,4.9\n3,7.2\n"
    r = subprocess.run(exe, input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = np.polyfit([0, 1, 2, 3], [1, 3.1, 4.9, 7.2], 1)
    got = json.loads(r.stdout)["params"]
    assert got["a"] == pytest.approx(a, rel=1e-12) and got["b"] == pytest.approx(b, rel=1e-12)
    bad = subprocess.run(exe, input="x,y\n1,oops\n", capture_output=True, text=True)
    assert bad.returncode == 2 and "standard input, row 2, column 'y'" in bad.stderr
    long = "g,x,y\n" + "".join(f"{g},{x},{(g + 1) * x + 1}\n" for g in (1, 2) for x in range(4))
    out = tmp_path / "fits.csv"
    r = subprocess.run(exe[:7] + ["--group", "g", "--out", str(out), "-q"], input=long,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_text().count("\n") == 3


def test_eval_says_when_the_loss_is_not_finite(capsys, tmp_path):
    # 'mse = inf' had been printed with no word on why
    zero = _csv(tmp_path, "x,y\n0,2\n1,4\n2,7\n3,8\n")
    code, out, err = run(capsys, "eval", zero, "--model", "a/x+b", "--params", "a=1,b=1")
    assert code == 0 and "mse = inf" in out
    assert "not finite at these parameters" in err and len(err.strip().splitlines()) == 1


def test_values_that_start_with_a_minus_are_values_not_options(capsys):
    """'--lrs -1,0.1' was read by argparse as an unknown option; now the value reaches its
    own check, which says what was wrong (exit 2)."""
    code, out, err = run(capsys, "lr-sweep", "lesson", "--model", "a*x+b", "--lrs", "-1,0.1")
    assert code == 2 and "bad learning rates" in err and "-1,0.1" in err
    code, out, err = run(capsys, "fit", "lesson", "--model", "a*x+b", "--optimizer", "gd",
                         "--lr", "-1e-3")
    assert code == 2 and "bad learning rate" in err
    # an expression that starts with a minus is the model (it was "expected one argument")
    code, out, err = run(capsys, "fit", "lesson", "--model", "-a*x^2+b", "--json", "-")
    plain = json.loads(run(capsys, "fit", "lesson", "--model", "a*x^2+b", "--json", "-")[1])
    assert code == 0 and json.loads(out)["params"]["a"] == pytest.approx(-plain["params"]["a"])


def test_python_dash_m_gradfit_is_the_command_line():
    ok = subprocess.run([sys.executable, "-m", "gradfit", "fit", "lesson", "--model", "poly:1",
                         "--quiet"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == "" and "Traceback" not in ok.stderr


def test_a_learning_rate_given_to_an_exact_method_is_noted_not_taken_silently(capsys):
    code, out, err = run(capsys, "fit", "lesson", "--model", "a*exp(b*x)", "--lr", "0.5",
                         "--schedule", "cosine", "--quiet")
    assert code == 0 and "--lr and --schedule not used" in err and "lm" in err
    code, out, err = run(capsys, "fit", "lesson", "--model", "a*x^2+b*x+c", "--optimizer",
                         "gd", "--lr", "0.01", "--steps", "2000", "--quiet")
    assert "not used" not in err
