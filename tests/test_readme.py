"""Every command-line example of the README runs and exits 0 (``serve`` excepted: it
serves until stopped). The lines are read from the README's bash block, in process."""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from gradfit.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def cli_examples() -> list[str]:
    """The gradfit command lines of the README's "From the command line" block, with
    continuation lines joined and comments dropped."""
    text = README.read_text()
    section = text.split("## From the command line", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [" ".join(shlex.quote(a) for a in words) for words in lines
            if words and words[0].endswith("gradfit")]


def test_the_readme_block_is_found():
    examples = cli_examples()
    assert len(examples) >= 7 and any(" serve" in e for e in examples)
    assert all(not e.endswith("\\") for e in examples)


RUNNABLE = [e for e in cli_examples() if shlex.split(e)[1] != "serve"]


@pytest.mark.parametrize("line", RUNNABLE,
                         ids=[f"{i}-{shlex.split(e)[1]}" for i, e in enumerate(RUNNABLE)])
def test_a_readme_example_exits_0(line, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    t = np.linspace(0, 10, 40)            # the user's data.csv: a decay with uncertainties
    err = np.full_like(t, 0.05)
    signal = 10 * np.exp(-0.5 * t) + 1 + err * np.random.default_rng(1).standard_normal(40)
    np.savetxt("data.csv", np.column_stack([t, signal, err]), delimiter=",",
               header="t,signal,err", comments="")
    code = main(shlex.split(line)[1:])
    _, err_text = capsys.readouterr()
    assert code == 0, err_text
