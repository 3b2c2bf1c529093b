"""TFLite int8 ResNet-50 at batch 1 against the Keras float32 path.

Latency per image at batch 1: the Keras model's `predict_on_batch` (a compiled
tf.function, float32) against the int8 .tflite file that
keras_resnet.export.tflite.convert writes, run by LiteRT's interpreter (XNNPACK)
with its default threads and with `num_threads` = the CPU count (as many as
Keras uses). Interleaved rounds of `--calls` calls each; medians, and the
median of per-round ratios with their range (target: int8 >= 6x float32).
`--per_tensor` also converts with per-tensor weight scales.

Agreement on real photographs: no published ImageNet weights are available
offline (the test caches hold fakes in the published layout), so the network
is made to give meaningful, unsaturated predictions on photographs instead:
ResNet-50 (random initialisation, seed 0) whose BN moving statistics are
adapted to photographs (training-mode forward passes, momentum 0), and whose
classifier is fitted (softmax regression on the pooled features, the backbone
frozen) to tell which region (2x2 grid cell) of which photograph a crop shows.
Photographs: those shipped in installed packages (matplotlib's
grace_hopper.jpg, and any other found by `--photos`). Three disjoint sets of
random crops (25-100% area, flipped at random, each seeded apart): one adapts
BN and fits the classifier, one calibrates the int8 ranges, one measures top-1
agreement between the int8 and the float Keras model.

  python benchmarks/bench_tflite.py            # about 5 minutes on 2 cores
  python benchmarks/bench_tflite.py --quick    # smoke run
  python benchmarks/bench_tflite.py --rounds=9 --output_json=t.json
"""

import glob
import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_list("photos", [
    "{site}/matplotlib/mpl-data/sample_data/*.jpg",
    "{site}/skimage/data/*.jpg", "{site}/skimage/data/*.png",
    "{site}/sklearn/datasets/images/*.jpg",
], "Globs of photographs; {site} is site-packages.")
flags.DEFINE_integer("rounds", 7, "Interleaved timing rounds.", lower_bound=1)
flags.DEFINE_integer("calls", 5, "Calls per path per round.", lower_bound=1)
flags.DEFINE_integer("agreement_views", 200, "Crops the agreement is measured on.", lower_bound=1)
flags.DEFINE_integer("calibration_views", 64, "Crops int8 is calibrated on.", lower_bound=1)
flags.DEFINE_integer("fit_views", 128, "Crops that adapt BN and fit the classifier.", lower_bound=8)
flags.DEFINE_bool("per_tensor", False, "Also convert with per-tensor weight scales.")
flags.DEFINE_bool("quick", False, "Smoke run: 2 rounds of 2 calls, few crops.")
flags.DEFINE_string("output_json", None, "Write the results here as JSON.")
FLAGS = flags.FLAGS
SIZE, GRID = 224, 2


def find_photos():
    import site

    sites = site.getsitepackages()
    paths = sorted({p for pattern in FLAGS.photos for s in sites
                    for p in glob.glob(pattern.format(site=s))})
    if not paths:
        raise app.UsageError(f"No photographs found by {FLAGS.photos}")
    return paths


def crops(photos, count, seed):
    """(images [count, 224, 224, 3] float32 in [0, 255], labels): random crops
    of 25-100% of a photograph's shorter side; label: photo * GRID**2 + the
    grid cell of the crop's centre."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(count):
        p = rng.integers(len(photos))
        photo = photos[p]
        h, w = photo.shape[:2]
        side = int(min(h, w) * np.sqrt(rng.uniform(0.25, 1.0)))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = tf.image.resize(photo[top:top + side, left:left + side], [SIZE, SIZE], antialias=True)
        crop = np.clip(crop.numpy(), 0, 255)
        images.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
        cell = int((top + side / 2) * GRID // h) * GRID + int((left + side / 2) * GRID // w)
        labels.append(p * GRID * GRID + cell)
    return np.stack(images).astype("float32"), np.array(labels)


def build_model(photos, fit_views):
    """ResNet-50 with BN adapted to photographs and a fitted classifier."""
    import keras
    import numpy as np

    import keras_resnet

    keras.utils.set_random_seed(0)
    classes = len(photos) * GRID * GRID
    images, labels = crops(photos, fit_views, seed=1)
    backbone = keras_resnet.ResNet50(weights=None, include_top=False, pooling="avg",
                                     input_shape=(SIZE, SIZE, 3))
    model = keras_resnet.with_preprocessing(backbone, keras_resnet.caffe_preprocessing())
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # each pass sets the statistics to its batch's
    model(images, training=True)  # one pass over all crops: their statistics
    features = model.predict(images, batch_size=16, verbose=0)
    scale = float(features.std()) or 1.0
    head = keras.Sequential([keras.layers.Input((features.shape[1],)),
                             keras.layers.Rescaling(1 / scale),
                             keras.layers.Dense(classes, activation="softmax")])
    head.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    head.fit(features, labels, epochs=200, batch_size=32, verbose=0)
    full = keras.Model(model.input, head(model.output), name="resnet50_photos")
    fit_accuracy = float(np.mean(full.predict(images, verbose=0).argmax(-1) == labels))
    return full, fit_accuracy


def interpreter(content, num_threads=None):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=num_threads)
    it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()

    def call(image):
        it.set_tensor(inp["index"], image)
        it.invoke()
        return it.get_tensor(out["index"])

    return call


def _time(fn, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # keras_resnet before TensorFlow, as a user's script imports it: it asks
    # TensorFlow for oneDNN, which only counts before TensorFlow is loaded.
    from keras_resnet.export import tflite
    import numpy as np
    import tensorflow as tf

    if FLAGS.quick:
        FLAGS.rounds, FLAGS.calls = 2, 2
        FLAGS.agreement_views, FLAGS.calibration_views, FLAGS.fit_views = 24, 8, 32
    paths = find_photos()
    photos = [tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False).numpy()
              for p in paths]
    model, fit_accuracy = build_model(photos, FLAGS.fit_views)
    calibration, _ = crops(photos, FLAGS.calibration_views, seed=2)
    agreement, agreement_labels = crops(photos, FLAGS.agreement_views, seed=3)
    expected = model.predict(agreement, batch_size=16, verbose=0)

    variants = {"int8": {}}
    if FLAGS.per_tensor:
        variants["int8_per_tensor"] = {"_experimental_disable_per_channel": True}
    threads = os.cpu_count()
    paths_to_time = {"keras_float32": lambda x: model.predict_on_batch(x)}
    results = {"photos": paths, "fit_accuracy": round(fit_accuracy, 3),
               "float_accuracy_on_agreement_set": round(float(
                   np.mean(expected.argmax(-1) == agreement_labels)), 3),
               "mean_top1_prob": round(float(expected.max(-1).mean()), 3)}
    for name, options in variants.items():
        start = time.perf_counter()
        content = tflite.convert(model, "int8", calibration, converter_options=options)
        results[f"{name}_convert_s"] = round(time.perf_counter() - start, 1)
        run = interpreter(content)
        got = np.concatenate([run(image[None]) for image in agreement])
        results[f"{name}_top1_agreement"] = round(float(np.mean(got.argmax(-1) == expected.argmax(-1))), 4)
        results[f"{name}_max_abs_diff"] = round(float(np.abs(got - expected).max()), 4)
        paths_to_time[f"{name}_default_threads"] = run
        paths_to_time[f"{name}_{threads}_threads"] = interpreter(content, threads)
    image = agreement[:1]
    for fn in paths_to_time.values():
        _time(lambda: fn(image), 2)  # warm-up: tracing, XNNPACK packing
    latency = {k: [] for k in paths_to_time}
    for r in range(FLAGS.rounds):
        order = list(paths_to_time) if r % 2 == 0 else list(reversed(paths_to_time))
        for k in order:
            latency[k].append(_time(lambda: paths_to_time[k](image), FLAGS.calls))
    base = latency["keras_float32"]
    print(f"{'path':28s} {'ms/image':>9s} {'speed-up':>9s} {'range':>12s}")
    for k, v in latency.items():
        ratios = [b / x for b, x in zip(base, v)]
        results[k] = {"ms": round(1000 * statistics.median(v), 2),
                      "speedup": round(statistics.median(ratios), 2),
                      "speedup_min": round(min(ratios), 2), "speedup_max": round(max(ratios), 2)}
        print(f"{k:28s} {1000 * statistics.median(v):9.2f} {statistics.median(ratios):9.2f} "
              f"{min(ratios):5.2f}-{max(ratios):<5.2f}")
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}))
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
