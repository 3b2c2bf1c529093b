"""The model a training run trains, compiled with its recipe: `build_model`.

A fresh network (He initialisation), or one started from a weights file
(`Config.weights`: "imagenet", a `.keras` file or a weights file) for
fine-tuning, loaded all or nothing, its backbone frozen if the run says so.
It keeps the top of the weights only where it fits (the run's classes, in
their order; else a new one), and their preprocessing where it applies (the
caffe mean; the per-pixel mean of the model they come from at the same image
size; else the new training set's). Each choice is logged.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_resnet.models import weights as weights_lib
from keras_resnet.models.preprocessing import MeanSubtraction
from keras_resnet.models.preprocessing import normalization_layer
from keras_resnet.models.preprocessing import with_preprocessing
from keras_resnet.models.resnet import classifier
from keras_resnet.models.resnet import get_model
from keras_resnet.training.run import PRECISIONS
from keras_resnet.training.run import Run

__all__ = ["build_model"]


def _keeps_top(run: Run, source: weights_lib.WeightsSource) -> bool:
    """Whether the run's top is the weights' own, and logs which: only a top
    for the run's classes (their number, and their names where the file
    records them) can predict them; any other gets a new one."""
    there = source.top_classes
    if there is None:
        reason = "the file has none"
    elif there != run.num_classes:
        reason = f"the file's top has {there} classes"
    elif source.info is not None and source.info.class_names != run.class_names:
        other = sorted(set(source.info.class_names) ^ set(run.class_names))
        reason = (f"the file's top is for other classes, e.g. {other[0]!r}" if other
                  else "the file's top has the classes in another order")
    else:
        logging.info("%s: kept the file's %d-class top", source.name, there)
        return True
    logging.info("%s: new %d-class top (%s)", source.name, run.num_classes, reason)
    return False


def _backbone(run: Run, source: weights_lib.WeightsSource | None) -> keras.Model:
    """The network with a `run.num_classes` top; the weights of `source`
    (`config.weights`) loaded all or nothing, their top only if it fits."""
    config, recipe = run.config, run.recipe
    options = dict(input_shape=(run.image_size, run.image_size, 3),
                   weight_decay=recipe.weight_decay, shortcut=config.shortcut,
                   **run.weights.options)
    if source is not None and not _keeps_top(run, source):
        # The rest of the network as the weights have it, and a new head.
        base = get_model(
            config.model, weights=run.weights, include_top=False, pooling="avg", **options
        )
        head = classifier(run.num_classes, weight_decay=recipe.weight_decay)
        backbone = keras.Model(base.input, head(base.output), name=base.name)
    else:
        backbone = get_model(
            config.model, weights=run.weights, classes=run.num_classes, **options
        )
    if config.freeze_backbone:
        # trainable=False also runs Keras 3 BatchNormalization in inference
        # mode: its moving statistics stay those of the weights.
        for layer in backbone.layers:
            layer.trainable = layer.name == weights_lib.TOP_LAYER
    return backbone


def _preprocessing(run: Run, pixel_mean: np.ndarray | None,
                   source: weights_lib.WeightsSource | None) -> MeanSubtraction:
    """The run's preprocessing (`run.preprocessing`): a normalisation of the
    weights' table ("caffe", "torchvision"), or a per-pixel mean: that of the
    model the weights come from, as its backbone learnt its features on
    inputs so preprocessed, where it applies (the same image size); else
    `pixel_mean`, the new training set's. Logs which."""
    info = source.info if source is not None else None
    if run.preprocessing != "pixel_mean":
        if source is not None:
            logging.info("preprocessing: kept the %s %s of %s", run.preprocessing,
                         "mean" if run.preprocessing == "caffe" else "normalisation", source.name)
        return normalization_layer(run.preprocessing)
    if info is not None and source.mean is not None and info.image_size == run.image_size:
        logging.info("preprocessing: kept the per-pixel mean of %s", source.name)
        return MeanSubtraction(source.mean, name="preprocessing")
    if info is not None:
        reason = (f"image size {info.image_size} there, {run.image_size} now"
                  if source.mean is not None else "the file holds none")
        logging.info("preprocessing: replaced the per-pixel mean of %s by the new training "
                     "set's per-pixel mean (%s)", source.name, reason)
    return MeanSubtraction(pixel_mean, name="preprocessing")


def build_model(run: Run, pixel_mean: np.ndarray | None,
                strategy: tf.distribute.Strategy | None = None) -> keras.Model:
    """The backbone with its preprocessing in front (`pixel_mean`, the data's,
    for "pixel_mean", unless the weights' own applies), compiled with the
    recipe, under `strategy` and the run's precision policy."""
    source = weights_lib.read_source(run.weights) if run.weights.given is not None else None
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[run.config.mixed_precision])
    try:
        with strategy.scope() if strategy else contextlib.nullcontext():
            model = with_preprocessing(_backbone(run, source),
                                       _preprocessing(run, pixel_mean, source))
            model.compile(
                optimizer=keras.optimizers.SGD(run.schedule,
                                               momentum=run.recipe.momentum,
                                               nesterov=run.recipe.nesterov),
                loss=keras.losses.CategoricalCrossentropy(
                    label_smoothing=run.recipe.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                jit_compile=run.config.jit_compile,
            )
            return model
    finally:
        keras.config.set_dtype_policy(previous_policy)
