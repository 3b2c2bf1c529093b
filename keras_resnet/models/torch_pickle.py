"""A closed pickle reader for the data.pkl of a `torch.save` file: `load`.

Python's unpickler builds whatever the stream asks for: it calls any global it
is given, sets attributes (BUILD), and trusts the types it made. Restricting
`find_class` is not enough against a hostile file: the stream can set the
state of the objects it may build, nest a tuple deep enough that hashing it as
a dict key overflows the C stack, or pick dict keys whose hashes collide. So
this reader interprets the opcodes itself (from `pickletools.genops`, which
only parses them) and builds nothing but

- None, bool, int (|i| < 2**64), float, str and bytes;
- tuples, lists and dicts of those (dict keys: str, or int in +-2**31, so no
  two keys share a hash, and a container is never hashed);
- what the caller's own functions return, when the stream calls them by their
  global name (REDUCE), and the caller's constants (dtypes), which may only be
  arguments of those calls.

Every other opcode (INST, OBJ, NEWOBJ, EXT*, sets, buffers, protocol 0's text
opcodes) is refused by name, and so is BUILD, except on an OrderedDict, whose
state (the `_metadata` PyTorch attaches to a state dict) is dropped. Before the
result is returned it is copied, depth first without recursion, into exact
built-in containers, so that no value the file shaped can reach the caller
but data. Bounds: MAX_OPCODES opcodes, MAX_MEMO memo entries, MAX_DEPTH levels
of nesting (MARKs as they open, containers when done), checked as the stream
is read.
"""

import pickletools
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

MAX_OPCODES = 1_000_000  # a ResNet-152 state dict takes about 25,000
MAX_MEMO = 250_000  # memo entries; a ResNet-152 state dict stores about 15,000
MAX_DEPTH = 32  # a checkpoint with its optimizer's state nests 5 deep
MAX_PROTOCOL = 5
_MAX_INT_BITS = 64
_MAX_KEY = 1 << 31
_SCALARS = (type(None), bool, int, float, str, bytes)


class Refusal(ValueError):
    """Why a pickle is not read (the caller names the file)."""


class _OrderedDict(dict):
    """What `collections.OrderedDict()` builds here: a dict that may take a
    BUILD (whose state is dropped). No instance attributes: a stream cannot
    give it methods."""

    __slots__ = ()


class _Callable:
    """A global the stream may call: `function`, or None for OrderedDict."""

    __slots__ = ("function", "name")

    def __init__(self, function: Callable[..., Any] | None, name: str):
        self.function, self.name = function, name


_ORDERED_DICT = ("collections", "OrderedDict")


def load(
    data: bytes,
    *,
    functions: Mapping[tuple[str, str], Callable[..., Any]],
    constants: Mapping[tuple[str, str], Any],
    persistent_load: Callable[[Any], Any],
    results: tuple[type, ...],
    accepted: str,
) -> Any:
    """The object pickled in `data`, of exact built-in types and `results`.

    Args:
        data: the pickle.
        functions: (module, name) -> the function called where the stream
            calls that global; it gets exactly typed arguments and must check
            them itself.
        constants: (module, name) -> the value that global stands for.
        persistent_load: turns a persistent id (BINPERSID) into a value.
        results: the types that `functions` and `persistent_load` return
            which may be part of the result (e.g. np.ndarray).
        accepted: what a refusal says is accepted.

    Raises:
        Refusal: one sentence on what in the stream is refused.
        ValueError: from pickletools: a truncated or malformed stream.
    """
    machine = _Machine(functions, constants, persistent_load, accepted)
    for count, (opcode, argument, _) in enumerate(pickletools.genops(data), 1):
        if count > MAX_OPCODES:
            raise Refusal(f"its pickle has more than {MAX_OPCODES:,} opcodes; a state dict "
                          "has far fewer")
        step = getattr(machine, f"op_{opcode.name}", None)
        if step is None:
            raise Refusal(f"its pickle uses the opcode {opcode.name}, which a state dict does "
                          f"not need, so the file is not loaded; accepted: {accepted}")
        step(argument)
    return _exact_copy(machine.result, results)


class _Machine:
    """The pickle machine's stack, marks and memo, and its opcodes."""

    def __init__(self, functions, constants, persistent_load, accepted):
        self.globals = {
            _ORDERED_DICT: _Callable(None, "collections.OrderedDict"),
            **{key: _Callable(f, ".".join(key)) for key, f in functions.items()},
            **constants,
        }
        self.persistent_load, self.accepted = persistent_load, accepted
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.result: Any = None

    def pop(self) -> Any:
        if not self.stack:
            raise Refusal("its pickle takes a value from an empty stack; the file is corrupt")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise Refusal("its pickle closes a MARK it never opened; the file is corrupt")
        start = self.marks.pop()
        items, self.stack[start:] = self.stack[start:], []
        return items

    def top(self, kinds: tuple[type, ...], what: str) -> Any:
        if not self.stack or kinds and type(self.stack[-1]) not in kinds:
            found = type(self.stack[-1]).__name__ if self.stack else "nothing"
            raise Refusal(f"its pickle {what} a {found}; the file is corrupt")
        return self.stack[-1]

    # Protocol, framing, the end.
    def op_PROTO(self, version: int) -> None:
        if version > MAX_PROTOCOL:
            raise Refusal(f"its pickle is of protocol {version}; accepted: 2 to {MAX_PROTOCOL}")

    def op_FRAME(self, _: int) -> None:
        pass

    def op_STOP(self, _: None) -> None:
        self.result = self.pop()

    # Scalars.
    def push(self, value: Any) -> None:
        self.stack.append(value)

    op_BININT = op_BININT1 = op_BININT2 = op_BINFLOAT = push
    op_BINUNICODE = op_SHORT_BINUNICODE = op_BINUNICODE8 = push
    op_BINBYTES = op_SHORT_BINBYTES = op_BINBYTES8 = push

    def op_LONG1(self, value: int) -> None:
        if value.bit_length() > _MAX_INT_BITS:
            raise Refusal(f"its pickle holds an integer of {value.bit_length()} bits; accepted: "
                          f"at most {_MAX_INT_BITS}")
        self.push(value)

    op_LONG4 = op_LONG1

    def op_NONE(self, _: None) -> None:
        self.push(None)

    def op_NEWTRUE(self, _: None) -> None:
        self.push(True)

    def op_NEWFALSE(self, _: None) -> None:
        self.push(False)

    # Marks and containers.
    def op_MARK(self, _: None) -> None:
        if len(self.marks) >= MAX_DEPTH:
            raise Refusal(f"its pickle nests more than {MAX_DEPTH} levels deep; a state dict "
                          "nests a few")
        self.marks.append(len(self.stack))

    def op_POP(self, _: None) -> None:
        self.pop()

    def op_POP_MARK(self, _: None) -> None:
        self.pop_mark()

    def op_DUP(self, _: None) -> None:
        self.push(self.top(_ANY, "duplicates"))

    def op_EMPTY_TUPLE(self, _: None) -> None:
        self.push(())

    def op_TUPLE(self, _: None) -> None:
        self.push(tuple(self.pop_mark()))

    def op_TUPLE1(self, _: None) -> None:
        self.push((self.pop(),))

    def op_TUPLE2(self, _: None) -> None:
        second = self.pop()
        self.push((self.pop(), second))

    def op_TUPLE3(self, _: None) -> None:
        third, second = self.pop(), self.pop()
        self.push((self.pop(), second, third))

    def op_EMPTY_LIST(self, _: None) -> None:
        self.push([])

    def op_LIST(self, _: None) -> None:
        self.push(self.pop_mark())

    def op_APPEND(self, _: None) -> None:
        value = self.pop()
        self.top((list,), "appends to").append(value)

    def op_APPENDS(self, _: None) -> None:
        values = self.pop_mark()
        self.top((list,), "appends to").extend(values)

    def op_EMPTY_DICT(self, _: None) -> None:
        self.push({})

    def op_DICT(self, _: None) -> None:
        target: dict = {}
        self.set_items(target, _pairs(self.pop_mark()))
        self.push(target)

    def op_SETITEM(self, _: None) -> None:
        value, key = self.pop(), self.pop()
        self.set_items(self.top(_DICTS, "sets an item of"), [(key, value)])

    def op_SETITEMS(self, _: None) -> None:
        pairs = _pairs(self.pop_mark())
        self.set_items(self.top(_DICTS, "sets an item of"), pairs)

    def set_items(self, target: dict, pairs: list[tuple[Any, Any]]) -> None:
        for key, value in pairs:
            if not (type(key) is str or (type(key) is int and -_MAX_KEY < key < _MAX_KEY)):
                raise Refusal(f"its pickle has a dict key of type {type(key).__name__}"
                              f"{'' if type(key) is not int else ' beyond 2**31'}; accepted: "
                              "str, or int within 2**31")
            target[key] = value

    # The memo.
    def op_BINPUT(self, index: int) -> None:
        if len(self.memo) >= MAX_MEMO and index not in self.memo:
            raise Refusal(f"its pickle stores more than {MAX_MEMO:,} memo entries")
        self.memo[index] = self.top(_ANY, "memoizes")

    op_LONG_BINPUT = op_BINPUT

    def op_MEMOIZE(self, _: None) -> None:
        self.op_BINPUT(len(self.memo))

    def op_BINGET(self, index: int) -> None:
        if index not in self.memo:
            raise Refusal(f"its pickle reads memo entry {index}, which it never stored; "
                          "the file is corrupt")
        self.push(self.memo[index])

    op_LONG_BINGET = op_BINGET

    # Globals, calls and state.
    def op_GLOBAL(self, qualified: str) -> None:
        module, _, name = qualified.partition(" ")
        self.push_global(module, name)

    def op_STACK_GLOBAL(self, _: None) -> None:
        name, module = self.pop(), self.pop()
        if type(name) is not str or type(module) is not str:
            raise Refusal("its pickle names a global by a value that is no string")
        self.push_global(module, name)

    def push_global(self, module: str, name: str) -> None:
        if (module, name) not in self.globals:
            raise Refusal(f"its pickle refers to {printable(f'{module}.{name}')}, which a state "
                          f"dict does not need, so the file is not loaded; accepted: "
                          f"{self.accepted}")
        self.push(self.globals[module, name])

    def op_REDUCE(self, _: None) -> None:
        arguments, function = self.pop(), self.pop()
        if type(function) is not _Callable or type(arguments) is not tuple:
            raise Refusal(f"its pickle calls a {type(function).__name__}, which is no function "
                          "a state dict calls; the file is corrupt")
        if function.function is None:  # OrderedDict(): its items come by SETITEMS
            if arguments:
                raise Refusal("its pickle calls collections.OrderedDict with arguments; "
                              "accepted: none, as pickle writes it")
            self.push(_OrderedDict())
        else:
            self.push(function.function(*arguments))

    def op_BUILD(self, _: None) -> None:
        state = self.pop()
        target = self.top(_ANY, "sets the state of")
        if type(target) is not _OrderedDict or type(state) not in (dict, type(None)):
            raise Refusal(f"its pickle sets the state of a {type(target).__name__} to a "
                          f"{type(state).__name__}, which a state dict does not do; the file "
                          "is not loaded")

    def op_BINPERSID(self, _: None) -> None:
        self.push(self.persistent_load(self.pop()))


_ANY = ()  # `top` checks no type
_DICTS = (dict, _OrderedDict)


def _pairs(items: list[Any]) -> list[tuple[Any, Any]]:
    if len(items) % 2:
        raise Refusal("its pickle gives a dict an odd number of keys and values")
    return list(zip(items[::2], items[1::2]))


def _exact_copy(root: Any, results: tuple[type, ...]) -> Any:
    """`root` rebuilt of exact dicts, lists and tuples, without recursion;
    refuses a cycle, nesting deeper than MAX_DEPTH and any value that is no
    scalar, container or one of `results`."""
    leaves = (*_SCALARS, *results)
    copies: dict[int, tuple[Any, int]] = {}  # id -> (copy, height)
    open_ids: set[int] = set()
    pending = [(root, False)]
    while pending:
        value, children_done = pending.pop()
        if type(value) in leaves or id(value) in copies and not children_done:
            continue
        if type(value) not in (tuple, list, dict, _OrderedDict):
            raise Refusal(f"its pickle leaves a {type(value).__name__} outside any tensor; "
                          "a state dict holds only tensors, numbers, strings and containers")
        children = list(value.values()) if isinstance(value, dict) else list(value)
        if not children_done:
            if id(value) in open_ids:
                raise Refusal("its pickle holds a container that contains itself")
            open_ids.add(id(value))
            pending.append((value, True))
            pending.extend((child, False) for child in children)
            continue
        open_ids.discard(id(value))
        height = 1 + max((copies[id(c)][1] for c in children if id(c) in copies), default=0)
        if height > MAX_DEPTH:
            raise Refusal(f"its pickle nests more than {MAX_DEPTH} levels deep; a state dict "
                          "nests a few")

        def copy(child: Any) -> Any:
            return copies[id(child)][0] if id(child) in copies else child

        if isinstance(value, dict):
            result: Any = {key: copy(child) for key, child in value.items()}
        else:
            result = [copy(child) for child in value]
            if type(value) is tuple:
                result = tuple(result)
        copies[id(value)] = (result, height)
    return copies[id(root)][0] if id(root) in copies else root


def printable(text: str, limit: int = 80) -> str:
    """`text` as a message may show it: as it is when short and printable,
    else quoted with its control characters escaped (a name in a file may
    hold terminal escape codes), cut to `limit` characters."""
    if text.isprintable() and len(text) <= limit:
        return text
    shown = repr(text[:limit])
    return shown + "..." if len(text) > limit else shown
