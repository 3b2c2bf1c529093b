"""The programs explain themselves: --help lists their flags, a bad flag or a
missing TensorFlow is one line (exit 2), and their logs hold no start-up noise.

Each test runs the real program in a subprocess, as a user would: `python
train.py` in the checkout, or a console script as pip writes it.
"""

import os
import re
import subprocess
import sys

import pytest

from keras_resnet.training import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# How each program is run in a checkout, and flags of its own that --help must list.
PROGRAMS = {
    "train.py": (["train.py"], ["--model", "--dataset", "--strategy", "--epochs", "--verbose"]),
    "evaluate.py": (["evaluate.py"], ["--model", "--model_path", "--protocol", "--output_json"]),
    "export": (["-m", "export"], ["--model", "--model_path", "--output_dir", "--quantize"]),
}
# Flags that absl and TensorFlow define, which a program's --help must not list.
NOT_OURS = ("--logtostderr", "--only_check_args", "--verbosity", "--pdb")
# The console script that `pip install` writes for keras-resnet-train (pip's template).
CONSOLE_SCRIPT = """\
import re
import sys
from keras_resnet.programs.train import entry_point
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(entry_point())
"""


def _run(args, cwd=ROOT, **env):
    """Runs `python *args` with a user's environment: no TF_CPP_MIN_LOG_LEVEL
    of the tests, the checkout importable from anywhere."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    environ.update({"PYTHONPATH": ROOT, **env})
    return subprocess.run([sys.executable, *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=300)


def _listed(flag, help_text):
    """Whether `help_text` lists `flag` ("--name") with its help, as absl does:
    "  --name: help" or, for a boolean, "  --[no]name: help"."""
    return re.search(rf"^  --(\[no\])?{flag[2:]}: \S", help_text, re.M) is not None


@pytest.fixture
def console_script(tmp_path):
    """`keras-resnet-train` as pip installs it, outside the checkout."""
    path = tmp_path / "keras-resnet-train"
    path.write_text(CONSOLE_SCRIPT)
    return path


@pytest.mark.parametrize("program", [*PROGRAMS, "keras-resnet-train"])
def test_help_lists_the_programs_own_flags_with_their_help(program, console_script):
    args, own = PROGRAMS.get(program, ([str(console_script)], PROGRAMS["train.py"][1]))
    proc = _run([*args, "--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    for flag in own:
        assert _listed(flag, proc.stdout), (flag, proc.stdout)
    for flag in NOT_OURS:
        assert flag not in proc.stdout, flag


def test_helpshort_lists_every_flag_the_training_page_names_and_helpfull_all_of_them():
    with open(os.path.join(ROOT, "docs", "training.md")) as f:
        readme = f.read()
    # docs/training.md: "Flags (`python train.py --helpshort`): `--model` ...".
    pointer = re.search(r"Flags \(`python train.py --helpshort`\):(.*?)\n\n", readme, re.S)
    named = set(re.findall(r"`(--\w+)", pointer.group(1)))
    assert len(named) > 10, named
    short = _run(["train.py", "--helpshort"]).stdout
    assert {flag for flag in named if not _listed(flag, short)} == set()
    full = _run(["train.py", "--helpfull"]).stdout
    assert _listed("--model", full) and _listed("--logtostderr", full)  # absl's flags are still there.


@pytest.mark.parametrize("flag, names, accepted", [
    ("--strategy=bad", "--strategy=bad", "<auto|mirrored|multi_worker|one_device>"),
    ("--mixed_precision=half", "--mixed_precision=half", "<none|float16|bfloat16>"),
    ("--epoch=3", "'epoch'", "epochs"),
    ("--epochs=", "--epochs=", "an integer"),
    ("resnet56", "unexpected arguments: resnet56", "--name=value"),
])
def test_a_bad_flag_is_one_line_and_exit_2(flag, names, accepted):
    proc = _run(["train.py", flag])
    # One line: no "FATAL Flags parsing error", nor TensorFlow's start-up lines.
    assert proc.stderr.startswith("train.py: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert names in proc.stderr and accepted in proc.stderr
    assert proc.returncode == 2


def test_console_script_logs_what_it_runs_then_its_error_and_removes_the_model_dir_it_made(
        console_script):
    # A run that fails once it holds runs/<model>_<dataset>/ (no class folder):
    # its output is what the run is, then the error, nothing else.
    data = console_script.parent / "data"
    (data / "train" / "a").mkdir(parents=True)
    proc = _run([str(console_script), f"--dataset={data}"], cwd=console_script.parent)
    first, last = proc.stderr.splitlines()
    assert f"Training resnet20 on {data} with the cifar_paper recipe" in first, proc.stderr
    assert last.startswith("keras-resnet-train: error: Dataset folder"), proc.stderr
    assert proc.returncode == 2
    assert not (console_script.parent / "runs").exists()


def test_console_script_without_tensorflow_says_what_to_install(console_script, tmp_path):
    # As after `pip install .` without the [tensorflow] extra: the first
    # tensorflow on the path is one that is not there.
    missing = tmp_path / "without_tensorflow" / "tensorflow"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tensorflow'\", name='tensorflow')\n")
    proc = _run([str(console_script), "--help"],
                PYTHONPATH=os.pathsep.join([str(missing.parent), ROOT]))
    assert proc.stderr == ('keras-resnet-train: error: it needs TensorFlow, which is not '
                           'installed: pip install "keras-resnet-paper[tensorflow]"\n')
    assert proc.returncode == 2


def test_readme_calls_to_submodules_work_on_import_and_jax_needs_no_tensorflow(tmp_path):
    # docs/: keras_resnet.models.metadata.read_keras(path), keras_resnet.export.export_saved_model(...).
    code = """if True:
        import sys, keras, keras_resnet
        assert callable(keras_resnet.models.metadata.read_keras)
        if keras.backend.backend() == "tensorflow":
            assert callable(keras_resnet.export.export_saved_model)
        print("tensorflow" in sys.modules)
        """
    jax = _run(["-c", code], cwd=tmp_path, KERAS_BACKEND="jax")
    assert jax.returncode == 0 and jax.stdout == "False\n", jax.stderr[-2000:]
    tf = _run(["-c", code], cwd=tmp_path)
    assert tf.returncode == 0 and tf.stdout == "True\n", tf.stderr[-2000:]


def test_multi_worker_on_a_keras_it_cannot_patch_is_refused_in_one_line(tmp_path):
    # A later Keras whose trainer changed what the multi-worker fix replaces
    # (keras_resnet.training.distribute): refused before training, never run unpatched.
    proc = _run(["-c", "import runpy, sys, keras\n"
                 "from keras.src.backend.tensorflow import trainer\n"
                 "keras.__version__ = '3.99.0'\n"
                 "trainer.reduce_per_replica = lambda values, strategy: values\n"
                 "sys.argv = ['train.py', '--strategy=multi_worker', '--dataset=synthetic',"
                 " '--recipe=smoke', '--synthetic_examples=32', '--image_size=8', '--train_steps=1',"
                 " '--batch_size=8', '--model_dir=run', '--verbose=0']\n"
                 f"runpy.run_path({os.path.join(ROOT, 'train.py')!r}, run_name='__main__')"],
                cwd=tmp_path)
    # Its last line (this test imports TensorFlow before train.py can quiet it).
    error = proc.stderr.splitlines()[-1]
    assert error.startswith("train.py: error: --strategy=multi_worker: needs the Keras "), proc.stderr
    assert "Keras 3.99.0 changed reduce_per_replica" in error and "keras==3.15.*" in error
    assert proc.returncode == 2
    assert not (tmp_path / "run").exists()


def test_locked_model_dir_removes_only_what_it_made_and_left_empty(tmp_path):
    made = tmp_path / "runs" / "resnet20_cifar10"
    with trainer.locked_model_dir(str(made)):
        assert (made / ".lock").is_file()
    assert not (tmp_path / "runs").exists()  # nothing written: gone, runs/ with it.
    with trainer.locked_model_dir(str(made)):
        (made / "config.json").write_text("{}")
    assert sorted(p.name for p in made.iterdir()) == [".lock", "config.json"]
    found = tmp_path / "found"
    found.mkdir()
    with trainer.locked_model_dir(str(found)):
        pass
    assert found.is_dir()  # not made by the run: kept.
