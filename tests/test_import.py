"""`import keras_resnet` defines names and registers the package's Keras
objects, and does nothing else: no flags read, no exit, no stream touched, no
environment variable set, whatever sys.argv says. Only the package's own
programs, known by the command line that started the interpreter, import the
names lazily and prepare their process."""

import ast
import json
import os
import subprocess
import sys

import pytest

from keras_resnet import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT = os.path.join(ROOT, "keras_resnet", "__init__.py")

# As if it ran the checkout's train.py with a flag that train.py refuses, with
# stderr closed: the import must notice neither (a program's start-up would
# exit 2, or fail on the closed stream it captures).
HOSTILE_IMPORT = """if True:
    import json, logging, os, sys
    import keras  # what Keras and TensorFlow set in the environment is theirs
    sys.argv = [os.path.join(ROOT, "train.py"), "--no_such_flag", "--help"]
    environ, handlers = dict(os.environ), list(logging.getLogger().handlers)
    os.close(2)
    import keras_resnet
    try:
        os.fstat(2)
        stderr = "reopened"
    except OSError:
        stderr = "closed"
    changed = sorted(k for k in set(environ) | set(os.environ) if environ.get(k) != os.environ.get(k))
    os.dup2(1, 2)  # Keras may log to stderr from here on
    model = keras_resnet.ResNet20(input_shape=(8, 8, 3), classes=3)
    registered = keras.saving.get_registered_object("keras_resnet>RecipeSchedule")
    print(json.dumps(dict(argv=sys.argv[1:], stderr=stderr, changed=changed,
                          handlers=list(logging.getLogger().handlers) == handlers,
                          model=[model.name, list(model.output.shape)],
                          registered=registered is keras_resnet.RecipeSchedule)))
"""


def test_import_reads_no_flags_touches_no_stream_sets_nothing_and_registers():
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", f"ROOT = {ROOT!r}\n" + HOSTILE_IMPORT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == dict(
        argv=["--no_such_flag", "--help"], stderr="closed", changed=[], handlers=True,
        model=["resnet20", [None, 3]], registered=True), proc.stdout[-2000:]


CHECKOUT_TRAIN = os.path.join(ROOT, "train.py")


@pytest.mark.parametrize("argv, program", [
    (["python", CHECKOUT_TRAIN, "--epochs=1"], True),
    (["python", "-u", "-X", "dev", os.path.join(ROOT, "evaluate.py")], True),
    (["python", "-m", "export", "--model=resnet20"], True),
    (["python", "-mkeras_resnet.reproduce", "fig6"], True),
    (["python", "-m", "keras_resnet"], True),
    (["/venv/bin/python", "/venv/bin/keras-resnet-train", "--help"], True),
    (["python", "-c", "import keras_resnet", CHECKOUT_TRAIN], False),  # sys.argv may say train.py
    (["python", "/home/user/project/train.py"], False),  # a user's own train.py
    (["python", "-m", "pytest", "tests"], False),
    (["python", "-X", CHECKOUT_TRAIN], False),  # -X takes the next argument
    (["python"], False),
    (["python", "-"], False),
])
def test_programs_are_known_by_the_command_line_that_started_the_interpreter(argv, program):
    assert launch.is_program(argv) is program


def _public_names():
    """(the table's (module, name) pairs, the TYPE_CHECKING imports' pairs, __all__)."""
    with open(INIT) as f:
        tree = ast.parse(f.read())
    table = checked = exported = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "_PUBLIC":
            table = {(f"keras_resnet.{module}", name) for module, names in
                     ast.literal_eval(node.value).items() for name in names}
        elif isinstance(node, ast.Assign) and node.targets[0].id == "__all__":
            exported = ast.literal_eval(node.value)
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            checked = {(n.module, alias.name) for n in node.body for alias in n.names}
    return table, checked, exported


def test_the_type_checkers_names_are_the_tables_and_all_of_them_public():
    table, checked, exported = _public_names()
    assert table and checked == table
    assert sorted(exported) == sorted([name for _, name in table] + ["__version__"])


def test_every_public_name_is_its_modules():
    import keras_resnet

    table, _, _ = _public_names()
    for module, name in sorted(table):
        assert getattr(keras_resnet, name) is getattr(sys.modules[module], name), name
    assert set(dir(keras_resnet)) >= {name for _, name in table}
