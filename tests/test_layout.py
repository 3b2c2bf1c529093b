"""The layout: the packages are layers that import only downwards, the model
code needs only Keras, only the programs read flags, modules and functions
stay small, and tests/ and the Layout of docs/development.md follow the tree."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "keras_resnet")
# Each layer may import from itself and the layers before it.
LAYERS = ("files", "errors", "models", "data", "training", "evaluation", "export", "reproduce",
          "programs")
RANK = {"files": 0, "errors": 0, "version": 0, "launch": 0,
        **{name: i for i, name in enumerate(LAYERS)}}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # docstrings aside


def _modules():
    """(dotted name, path) of every module of the package."""
    for folder, _, names in os.walk(PACKAGE):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
                yield dotted.removesuffix(".__init__"), path


def _layer(dotted):
    """The layer of `keras_resnet.X...` (X), or None for the package root and
    the `__main__` modules, entry points that give every layer."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[-1] != "__main__" else None


def _imports(tree):
    """Every module an import statement names, at any depth (lazy imports too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _runtime_imports(tree):
    """(module, name or None) of each import that runs when the code does:
    those under `if TYPE_CHECKING:` are for type checkers only."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for statement in node.body for n in ast.walk(statement))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield from ((node.module, alias.name) for alias in node.names)


def import_graph(modules):
    """{module: the package's modules it imports when it runs, at any depth}
    of `modules` ({dotted name: parsed tree}). `from P import m` of a module
    m depends on P.m: a package's __init__, which runs first for any of its
    modules, is a dependency only where a name defined in it is imported."""
    graph = {}
    for dotted, tree in modules.items():
        targets = {f"{module}.{name}" if f"{module}.{name}" in modules else module
                   for module, name in _runtime_imports(tree)}
        graph[dotted] = {name for name in targets if name in modules and name != dotted}
    return graph


def import_cycles(graph):
    """The strongly connected groups of more than one module (Tarjan's
    algorithm, iterative): modules that import each other, however far round."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for other in edges:
                if other not in index:
                    index[other] = low[other] = len(index)
                    stack.append(other)
                    on_stack.add(other)
                    work.append((other, iter(sorted(graph[other]))))
                    break
                if other in on_stack:
                    low[node] = min(low[node], index[other])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        cycles.append(sorted(group))
    return cycles


def _parsed():
    for dotted, path in _modules():
        with open(path) as f:
            source = f.read()
        yield dotted, path, source, ast.parse(source)


def test_every_module_belongs_to_a_layer():
    layers = {_layer(dotted) for dotted, _ in _modules()} - {None}
    assert layers == set(RANK)


def test_no_module_imports_a_later_layer():
    upward = []
    for dotted, _, _, tree in _parsed():
        layer = _layer(dotted)
        if layer is None:  # the package root and entry points give every layer
            continue
        for name in _imports(tree):
            other = _layer(name) if name.startswith("keras_resnet.") else None
            if other in RANK and RANK[other] > RANK[layer]:
                upward.append(f"{dotted} imports {name}")
    assert upward == []


def test_no_modules_import_each_other():
    # The package root and the __main__ modules included; an import for type
    # checkers only (under TYPE_CHECKING) runs never, so it ties nothing.
    modules = {dotted: tree for dotted, _, _, tree in _parsed()}
    assert import_cycles(import_graph(modules)) == []


def test_the_cycle_finder_sees_a_cycle_however_far_round():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e", "d"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import b\n"
                     "def f():\n    import c\n")
    assert import_graph({"a": tree, "b": ast.parse(""), "c": ast.parse("")}) == {
        "a": {"c"}, "b": set(), "c": set()}


def test_the_model_code_needs_only_keras_and_only_the_programs_read_flags():
    found = []
    for dotted, _, _, tree in _parsed():
        names = set(_imports(tree))
        # fused.py imports TensorFlow's kernel, inside a function, on that backend only.
        if _layer(dotted) in ("models", "files", "errors") and dotted != "keras_resnet.models.fused":
            found += [f"{dotted} imports {n}" for n in names
                      if n.split(".")[0] in ("tensorflow", "tensorflow_datasets", "absl")]
        if _layer(dotted) != "programs":
            found += [f"{dotted} imports {n}" for n in names if n == "absl.flags"]
    assert found == []


def _docstring_lines(node):
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0].end_lineno - body[0].lineno + 1
    return 0


def test_no_module_over_400_lines_and_no_function_over_60():
    long = []
    for dotted, _, source, tree in _parsed():
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{dotted}: {len(source.splitlines())} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{dotted}.{node.name}: {lines} lines")
    assert long == []


def test_tests_mirror_the_packages():
    # tests/<package>/ for each package, and each of its test files tests
    # that package: it names it, in its imports or in the code it runs in a
    # subprocess (the models also through the package root).
    packages = {name for name in os.listdir(PACKAGE)
                if os.path.isfile(os.path.join(PACKAGE, name, "__init__.py"))}
    tests = os.path.join(ROOT, "tests")
    folders = {name for name in os.listdir(tests) if os.path.isdir(os.path.join(tests, name))}
    assert folders - {"fixtures", "__pycache__"} == packages
    strays = []
    for package in packages:
        for name in os.listdir(os.path.join(tests, package)):
            if not name.startswith("test_"):
                continue
            with open(os.path.join(tests, package, name)) as f:
                source = f.read()
            imported = set(_imports(ast.parse(source)))
            if f"keras_resnet.{package}" not in source and not (
                    package == "models" and "keras_resnet" in imported):
                strays.append(f"tests/{package}/{name}")
    assert strays == []


@pytest.mark.parametrize("layer", sorted(set(RANK) - {"files", "errors", "version", "launch"}))
def test_the_documented_layout_names_every_package(layer):
    with open(os.path.join(ROOT, "docs", "development.md")) as f:
        page = f.read()
    layout = page[page.index("## Layout"):]
    assert f"{layer}/" in layout
    for name in os.listdir(os.path.join(PACKAGE, layer)):
        if name.endswith(".py") and name not in ("__init__.py", "__main__.py"):
            assert f"`{name}`" in layout, f"{layer}/{name} is not in docs/development.md's Layout"
