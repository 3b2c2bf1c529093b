"""The backward-propagated gradients at initialisation and the kernels' norms
before and after training, plain against residual (paper Sec. 4.1).

He et al. (2015), Sec. 4.1, on why a deeper plain net trains to a higher
error: "We argue that this optimization difficulty is unlikely to be caused by
vanishing gradients. These plain networks are trained with BN, which ensures
forward propagated signals to have non-zero variances. We also verify that the
backward propagated gradients exhibit healthy norms with BN."

What is measured, for each run: the net as train.py initialises it (the run's
seed, data, preprocessing and build, in train.py's order), on the run's first
training batch (its augmentation), in training mode (BN on the batch's own
statistics, as the first step computes it): the L2 norm of the gradient of the
mean cross-entropy (weight decay left out: it is not back-propagated) with
respect to every convolution kernel, in the network's order, beside that
kernel's own norm at initialisation and in the trained model.keras; and over
training, the kernels' summed squared norms after each epoch (history.csv's
`kernel_norm2`). A healthy net's gradient norms stay within a small factor
from the last layer to the first; the ratio first/last is the summary number.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from keras_resnet.reproduce import report
from keras_resnet.reproduce.runs import RunResult
from keras_resnet.training import callbacks
from keras_resnet.training import model as model_lib
from keras_resnet.training import run as run_lib
from keras_resnet.training import trainer
from keras_resnet.training.run import Config


def initial_model(config: Config) -> tuple[keras.Model, tf.Tensor, tf.Tensor]:
    """The model of `config` as train.py initialises it, and the run's first
    training batch (images, one-hot labels)."""
    settings = run_lib.resolve_settings(config)
    keras.utils.set_random_seed(settings.config.seed)
    data = trainer.make_data(settings, replicas=1)
    run = settings.with_data(data.class_names, data.num_train).continuing(None)
    model = model_lib.build_model(run, data.pixel_mean)
    images, labels = next(iter(data.train))
    return model, images, labels


kernels = callbacks.conv_kernels


def gradient_norms(model: keras.Model, images: tf.Tensor, labels: tf.Tensor) -> np.ndarray:
    """The L2 norm of d(mean cross-entropy)/d(kernel) for each of `kernels(model)`,
    in training mode."""
    variables = kernels(model)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
            labels, model(images, training=True)))
    return np.array([float(tf.norm(g)) for g in tape.gradient(loss, variables)])


def kernel_norms(model: keras.Model) -> np.ndarray:
    return np.array([float(np.linalg.norm(v.numpy())) for v in kernels(model)])


def outputs(results: list[RunResult], output_dir: str) -> dict:
    """gradients.png, gradients.csv/.md (each run's conv layers: gradient and
    kernel norms at initialisation, kernel norm after training); returns
    each run's numbers for summary.json."""
    rows, series, summary = [], {}, {}
    for result in results:
        model, images, labels = initial_model(result.spec.config)
        grads, before = gradient_norms(model, images, labels), kernel_norms(model)
        trained = keras.saving.load_model(
            os.path.join(result.spec.config.model_dir, "model.keras"), compile=False)
        after = kernel_norms(trained)
        names = [v.path for v in kernels(model)]
        rows += [{"run": result.spec.name, "index": i, "kernel": name, "gradient norm": g,
                  "kernel norm at init": b, "kernel norm trained": a}
                 for i, (name, g, b, a) in enumerate(zip(names, grads, before, after), 1)]
        series[result.spec.name] = grads
        summary[result.spec.name] = {
            "gradient norm first/last conv": float(grads[0] / grads[-1]),
            "gradient norm max/min": float(grads.max() / grads.min()),
            "sum of squared kernel norms at init": callbacks.kernel_norm2(model),
            "sum of squared kernel norms trained": callbacks.kernel_norm2(trained),
        }
    norms = {r.spec.name: ([0] + [row["iterations"] for row in r.history if "kernel_norm2" in row],
                           [summary[r.spec.name]["sum of squared kernel norms at init"]]
                           + [row["kernel_norm2"] for row in r.history if "kernel_norm2" in row])
             for r in results}
    report.save_figure(_figure(series, norms), os.path.join(output_dir, "gradients.png"))
    report.write_table(os.path.join(output_dir, "gradients"), list(rows[0]), rows,
                       formats={k: "{:.4g}" for k in list(rows[0])[3:]})
    return {"gradients": summary}


def _figure(series: dict[str, np.ndarray], norms: dict[str, tuple[list, list]]) -> Figure:
    """Left: gradient norm at initialisation against the conv layer's place.
    Right: the kernels' summed squared norms against iterations (history.csv's
    kernel_norm2 after each epoch). Log scales; plain nets dashed, ResNets solid."""
    figure = Figure(figsize=(11, 4))
    left, right = figure.subplots(1, 2)
    for name, grads in series.items():
        style = "--" if name.startswith("plain") else "-"
        left.semilogy(np.arange(1, len(grads) + 1), grads, style, marker=".", label=name)
        right.semilogy(*norms[name], style, marker="o", label=name)
    left.set_xlabel("conv layer (input to output)")
    left.set_ylabel("gradient norm at initialisation")
    right.set_xlabel("iterations")
    right.set_ylabel("sum of squared conv kernel norms")
    for axes in (left, right):
        axes.legend()
    figure.tight_layout()
    return figure
