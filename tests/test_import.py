"""`import keras_resnet` defines names and does nothing else: no flags read, no
exit, no stream touched, neither Keras nor TensorFlow imported until a name
that needs them is used; and the names a type checker sees are those the
package gives."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT = os.path.join(ROOT, "keras_resnet", "__init__.py")

# Run as a program of the checkout would be (train.py, with a flag it refuses),
# with stderr closed: the import must notice neither.
HOSTILE_IMPORT = """if True:
    import json, logging, os, sys
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
    heavy = sorted(m for m in ("keras", "tensorflow", "absl.flags") if m in sys.modules)
    os.dup2(1, 2)  # Keras may log to stderr from here on
    model = keras_resnet.ResNet20(input_shape=(8, 8, 3), classes=3)
    print(json.dumps(dict(argv=sys.argv[1:], stderr=stderr, changed=changed, heavy=heavy,
                          handlers=list(logging.getLogger().handlers) == handlers,
                          model=[model.name, list(model.output.shape)])))
"""


def test_import_reads_no_flags_and_touches_no_stream_nor_tensorflow():
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(PYTHONPATH=ROOT, TF_ENABLE_ONEDNN_OPTS="1")  # the one default the import sets
    proc = subprocess.run([sys.executable, "-c", f"ROOT = {ROOT!r}\n" + HOSTILE_IMPORT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == ('{"argv": ["--no_such_flag", "--help"], "stderr": "closed", "changed": [], '
                    '"heavy": [], "handlers": true, "model": ["resnet20", [null, 3]]}'), proc.stdout[-2000:]


def _public_names():
    """(the lazy table's (module, name) pairs, the TYPE_CHECKING imports' pairs, __all__)."""
    tree = ast.parse(open(INIT).read())
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


def test_the_type_checkers_names_are_the_lazy_ones_and_all_of_them_public():
    table, checked, exported = _public_names()
    assert table and checked == table
    assert sorted(exported) == sorted([name for _, name in table] + ["load_model", "__version__"])


def test_every_public_name_resolves_to_its_module():
    import keras_resnet

    table, _, _ = _public_names()
    for module, name in sorted(table):
        assert getattr(keras_resnet, name) is getattr(sys.modules[module], name), name
    assert set(dir(keras_resnet)) >= {name for _, name in table}
