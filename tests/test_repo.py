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


def test_every_mutation_applies_to_the_tree():
    # tests/mutations.py's list stays in step with the code and the tests: each
    # bug applies exactly once, and each test it names exists (no TensorFlow here).
    from tests import mutations

    names = [m.name for m in mutations.MUTATIONS]
    assert len(names) >= 30 and len(set(names)) == len(names)
    for m in mutations.MUTATIONS + mutations.NOT_YET_CAUGHT:
        assert m.new != m.old, m.name
        assert _read(m.path).count(m.old) == 1, (m.name, m.path)
    for m in mutations.MUTATIONS:  # NOT_YET_CAUGHT's may name tests still to write.
        assert m.tests, m.name
        for node in m.tests:
            path, _, function = node.partition("::")
            function = function.split("[")[0]
            assert re.search(rf"^def {re.escape(function)}\(", _read(path), re.M), (m.name, node)
