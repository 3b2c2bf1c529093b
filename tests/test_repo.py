"""README.md's commands are the ones CI runs."""

import os
import re

# Two processes: the machine has 2 cores, and half the tests wait on subprocesses.
TEST_COMMAND = "python -m pytest -n 2"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def test_ci_runs_the_readme_test_command():
    readme = _read("README.md")
    ci_commands = [l for l in _read(".ci/run").splitlines() if l and not l.startswith("#")]
    assert ci_commands[-1] == TEST_COMMAND
    for command in (TEST_COMMAND, "python train.py"):
        assert re.search(rf"^{re.escape(command)}$", readme, re.M), command
    assert re.search(r"^python3 -m venv .* pip install -r requirements.txt$", readme, re.M)


def test_ci_installs_as_the_readme_says():
    install = re.search(r"^python3 -m venv \.venv && \. \.venv/bin/activate && (.*)$",
                        _read("README.md"), re.M).group(1)
    ci = _read(".ci/run")
    assert re.search(rf"^  {re.escape(install)}$", ci, re.M), install
    # Reinstalled when the package's own requirements change too.
    assert "cat requirements.txt pyproject.toml | sha256sum" in ci
