"""Shared test utilities: a file server on 127.0.0.1, md5 of a file, stand-in
files in the weights table's place, a full disk for a subprocess, a dead process id, BN statistics of a trained net, the
epochs a run's backup holds, and several program runs in one process."""

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def stand_in_table(paths):
    """The weights table's attributes (keras_resnet.models.pretrained's
    WEIGHTS and CLASS_INDEX) with the checksums of the local files `paths`
    (and their sizes, where the table has one) in place of the published
    files of the same names: test data, so that
    the real download and check run on files made here."""
    import dataclasses

    from keras_resnet.models import pretrained

    paths = {os.path.basename(p): p for p in paths}

    def replaced(file):  # the same algorithm, and a prefix where the table has one
        if file is None or file.fname not in paths:
            return file
        algorithm, expected = file.checksum.split(":")
        with open(paths[file.fname], "rb") as f:
            digest = hashlib.new(algorithm, f.read()).hexdigest()
        size = os.path.getsize(paths[file.fname]) if file.size is not None else None
        return dataclasses.replace(file, checksum=f"{algorithm}:{digest[:len(expected)]}",
                                   size=size)

    weights = tuple(dataclasses.replace(e, top=replaced(e.top), notop=replaced(e.notop))
                    for e in pretrained.WEIGHTS)
    return {"WEIGHTS": weights, "CLASS_INDEX": replaced(pretrained.CLASS_INDEX)}


def use_stand_ins(monkeypatch, *paths):
    """`stand_in_table(paths)` in the table's place for one test."""
    from keras_resnet.models import pretrained

    for name, value in stand_in_table(paths).items():
        monkeypatch.setattr(pretrained, name, value)


class FolderServer:
    """Serves `folder` over HTTP on 127.0.0.1 and counts the GET requests."""

    def __init__(self, folder):
        self.requests = 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def file_size_limit(limit_bytes):
    """A `preexec_fn` that makes a subprocess's disk look full: any write
    past `limit_bytes` in one file fails with EFBIG (SIGXFSZ ignored), as a
    write to a full disk fails with ENOSPC."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


def default_sigint():
    """A `preexec_fn` that gives a subprocess the default SIGINT, for tests
    that interrupt it: a test run started in the background (`cmd &` in a
    script) ignores SIGINT, and its subprocesses would inherit that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def dead_pid():
    """The id of a process that has ended, as a killed writer's would be."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def with_trained_statistics(model, seed=0):
    """Gives every BN the statistics and affine terms of a trained net, so that
    folding has something to fold (a fresh BN is the identity at inference)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            weights = {"gamma": rng.uniform(0.5, 1.5, shape), "beta": rng.normal(0, 0.2, shape),
                       "moving_mean": rng.normal(0, 0.5, shape),
                       "moving_variance": rng.uniform(0.2, 3.0, shape)}
            layer.set_weights([weights[w.name] for w in layer.weights])
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape))
    return model


def spread_scores(model, inputs, seed=0):
    """Sets `model`'s classifier to random weights scaled so that its logits
    on `inputs` are centred with a spread of about 1: a random net's softmax
    is otherwise one-hot on every image, whatever view or precision."""
    import keras
    import numpy as np

    pooled = keras.Model(model.input, model.get_layer("avg_pool").output)
    features = keras.ops.convert_to_numpy(pooled(inputs, training=False))
    head = model.get_layer("predictions")
    kernel = np.random.default_rng(seed).normal(0, 1, head.kernel.shape)
    kernel /= features.std(0).mean() * np.sqrt(features.shape[1])
    head.set_weights([kernel, -features.mean(0) @ kernel])
    return model


def backed_up_epochs(model_dir):
    """The epochs done that `model_dir`'s backup records (0 without one). The
    backup is renamed into place whole, so it can be read while a run writes."""
    import os

    import h5py

    path = os.path.join(model_dir, "backup", "latest.weights.h5")
    if not os.path.exists(path):
        return 0
    with h5py.File(path, "r") as f:
        return int(f.attrs["epochs"])


def write_legacy(model, path):
    """Writes `model`'s weights as the published keras.applications files are laid out."""
    import h5py
    import keras

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [l.name.encode() for l in model.layers]
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{v.name}:0" for v in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, v in zip(names, layer.weights):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(v))


# Each command parses its flags and runs the program's main, as `python
# PROGRAM ...` would, in one process: one import of TensorFlow for all.
_RUN_EACH_COMMAND = """
    import importlib, json, sys
    from absl import flags
    from keras_resnet.programs import cli
    program, module, arguments, argvs = json.loads(sys.argv[1])
    sys.argv = [program]  # the name the program's messages start with
    main = importlib.import_module(module).main
    codes = []
    for argv in argvs:
        flags.FLAGS.unparse_flags()
        try:
            main(cli.parse_flags([program, *argv], arguments=arguments))
            codes.append(0)
        except SystemExit as e:
            codes.append(e.code)
        sys.stderr.write("\\n---\\n")
    print(json.dumps(codes))
"""
# Each program's module, and how many arguments that are not flags it takes.
_PROGRAMS = {"train.py": ("train", 0), "evaluate.py": ("evaluate", 0), "export": ("export", 0),
             "reproduce": ("reproduce", 1)}


def run_commands(program, argvs, cwd, **env):
    """Runs `program` ("train.py", "evaluate.py", "export" or "reproduce")
    with each argument list of `argvs` in one subprocess, its flags parsed as
    the program parses them; [(exit code, its stderr)]."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO, **env)
    module, arguments = _PROGRAMS[program]
    job = json.dumps([program, f"keras_resnet.programs.{module}", arguments, argvs])
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_RUN_EACH_COMMAND), job],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.splitlines()[-1])
    return list(zip(codes, proc.stderr.split("\n---\n")))


def error_line(code, stderr, program):
    """The one line that a failed run ends with, checked to be one."""
    assert code == 2 and "Traceback" not in stderr, stderr[-3000:]
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"{program}: error: "), stderr[-3000:]
    return line[len(f"{program}: error: "):]
