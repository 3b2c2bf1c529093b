"""train.py's --model_dir: a folder of something else, or one whose files
were planted (links, a config.json that is not a run's), is refused in one
line before anything is written there; an empty folder, or a run's, is used."""

import dataclasses
import json
import os

from keras_resnet.training import callbacks
from keras_resnet.training import run as run_lib
from keras_resnet.training import trainer
from tests.bounded import run_bounded
from tests.helpers import error_line
from tests.helpers import run_commands

TINY = ["--recipe=cifar_paper", "--model=resnet20", "--image_size=16", "--batch_size=4",
        "--strategy=one_device", "--verbose=0"]
# What a user keeps in a folder of theirs, by the names a run writes.
USERS_FILES = {"model.keras": b"PK\x03\x04 a user's own model", "history.csv": b"epoch,loss\n1,0.5\n",
               "curves.png": b"\x89PNG\r\n\x1a\n a user's plot", "test.json": b'{"accuracy": 0.93}',
               "checkpoints/best.keras": b"PK\x03\x04 a user's best model"}


def _contents(folder):
    """Each path under `folder` with its bytes (None: a folder, or a link, not followed)."""
    found = {}
    for parent, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = os.path.join(parent, name)
            regular = os.path.isfile(path) and not os.path.islink(path)
            found[os.path.relpath(path, folder)] = open(path, "rb").read() if regular else None
    return found


def _folder(root, name, entries):
    folder = root / name
    for path, content in entries.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    folder.mkdir(exist_ok=True)
    return folder


def test_foreign_or_planted_model_dirs_are_refused_before_anything_is_written(tmp_path, image_folder):
    victim = tmp_path / "elsewhere" / "victim.json"
    victim.parent.mkdir()
    victim.write_bytes(b'{"config": {}}')  # a run's summary, to the letter
    users = _folder(tmp_path, "users", USERS_FILES)
    listed = _folder(tmp_path, "listed", {"config.json": b"[1, 2, 3]", **USERS_FILES})
    locked = _folder(tmp_path, "locked", {})
    (locked / ".lock").symlink_to(victim)
    linked = _folder(tmp_path, "linked", {"model.keras": b"PK\x03\x04 a user's own model"})
    (linked / "config.json").symlink_to(victim)
    large = _folder(tmp_path, "large", {})
    with open(large / "config.json", "wb") as f:
        f.truncate(run_lib.MAX_SUMMARY_BYTES + 1)
    before = {f: _contents(f) for f in (users, listed, locked, linked, large)}
    summary = str(listed / "config.json")
    refused = {
        users: "holds files but no run of train.py (no config.json; e.g. 'checkpoints'); choose "
               "an empty or new folder",
        listed: f"is not a run of train.py: {summary} is not a run's summary (a JSON object with "
                "its config); choose an empty or new folder",
        locked: f"model_dir '{locked}' cannot be locked: {locked}/.lock is a symbolic link; "
                "accepted: a regular file (remove it)",
        linked: f"is not a run of train.py: {linked}/config.json is a symbolic link; accepted: a "
                "regular file; choose an empty or new folder",
        large: f"is not a run of train.py: {large}/config.json holds "
               f"{run_lib.MAX_SUMMARY_BYTES + 1} bytes; accepted: at most "
               f"{run_lib.MAX_SUMMARY_BYTES}; choose an empty or new folder",
    }
    argvs = [[*TINY, f"--dataset={image_folder}", "--train_steps=1", f"--model_dir={folder}"]
             for folder in refused]
    outcomes = run_commands("train.py", argvs, cwd=tmp_path)
    for (folder, expected), (code, stderr) in zip(refused.items(), outcomes):
        line = error_line(code, stderr, "train.py")
        assert line == (expected if folder is locked else f"--model_dir={folder}: {expected}")
        assert _contents(folder) == before[folder]  # byte-identical, nothing added: no .lock
    assert victim.read_bytes() == b'{"config": {}}'


def test_an_empty_folder_is_a_new_run_s_and_a_run_s_folder_is_resumed(tmp_path):
    empty = _folder(tmp_path, "empty", {})
    config = run_lib.Config(dataset="synthetic", recipe="cifar_paper", synthetic_examples=32,
                            batch_size=16, image_size=16, strategy="one_device", verbose=0,
                            model_dir=str(empty))
    for steps in (1, 3):  # 1 step, then 2 more: 2 epochs of 2 steps, the last one short
        trainer.train(dataclasses.replace(config, train_steps=steps))
    assert [r["iterations"] for r in callbacks.read_history(str(empty / "history.csv"))] == [1, 3]
    assert json.loads((empty / "config.json").read_text())["plan"]["train_steps"] == 3


# Measured: importing keras_resnet.training.trainer maps 1715 MiB of address
# space (VmPeak in /proc/self/status); reading the 2 MiB file below peaks at
# 24 MiB (tracemalloc, metadata.parse_json's depth count): the bound claimed
# is 64 MiB on top.
DEEP_SUMMARY = """
    import sys
    from keras_resnet.training import trainer
    print(trainer.stored_run(sys.argv[1]))
"""


def test_a_config_json_nested_too_deep_is_read_as_unreadable_in_bounds(tmp_path):
    model_dir = _folder(tmp_path, "run", {"config.json": b"[" * (1 << 20) + b"]" * (1 << 20),
                                          "model.keras": b"PK\x03\x04 the run's model"})
    outcome = run_bounded(DEEP_SUMMARY, str(model_dir), memory_mb=1715 + 64, timeout_s=120)
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert outcome.stdout.strip() == "None"  # not checked against: this run rewrites it
    warning = [line for line in outcome.stderr.splitlines() if "Cannot read" in line]
    assert len(warning) == 1 and warning[0].endswith(
        f"Cannot read {model_dir}/config.json (JSON nested {1 << 20} deep; accepted: at most "
        "100): the run is not checked against it."), outcome.stderr[-3000:]
