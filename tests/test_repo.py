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


def _test_sources():
    """{path relative to the root: text} of every test file."""
    sources = {}
    for folder, _, names in os.walk(os.path.join(ROOT, "tests")):
        for name in sorted(n for n in names if n.startswith("test_") and n.endswith(".py")):
            path = os.path.relpath(os.path.join(folder, name), ROOT)
            sources[path] = _read(path)
    return sources


def _slow_marks(sources):
    """(file, line number, the comment above its decorators) of each slow mark."""
    for path, text in sources.items():
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if not re.match(r"\s*(@pytest\.mark\.slow|.*marks=pytest\.mark\.slow)", line):
                continue
            j = i  # up through the decorators, to the comment above them
            while j > 0 and not lines[j - 1].lstrip().startswith("#") and lines[j - 1].strip() \
                    and not lines[j - 1].startswith(("def ", "class ")):
                j -= 1
            comment = []
            while j > 0 and lines[j - 1].lstrip().startswith("#"):
                j -= 1
                comment.insert(0, lines[j])
            yield path, i + 1, " ".join(comment)


def test_each_slow_test_names_the_faster_tests_that_cover_it():
    # The default run leaves the slow tests out (pyproject.toml), which is
    # sound only while the tests its comment names cover the same path and
    # are themselves in the run.
    assert '-m \\"not slow\\"' in _read("pyproject.toml")
    sources = _test_sources()
    marks = list(_slow_marks(sources))
    assert len(marks) >= 5
    for path, line, comment in marks:
        covers = re.findall(r"\btest_\w+", comment)
        assert covers, f"{path}:{line}: the slow mark names no test that covers it"
        for cover in covers:
            defined = [re.search(rf"((?:^@.*\n)*)^def {cover}\(", text, re.M)
                       for text in sources.values()]
            defined = [d for d in defined if d]
            assert defined, f"{path}:{line}: {cover} does not exist"
            assert "@pytest.mark.slow" not in defined[0].group(1), (
                f"{path}:{line}: {cover} is slow itself")
