"""What this CPU's matrix products reach: the ceiling the model rates of RESULTS.md are read against.

A convolution is a matrix product (im2col, or oneDNN's and XNNPACK's direct
kernels, which tile it the same way), so a large, square, cache-friendly
product is the most a ResNet layer can run at, in the same library:
  float32, bfloat16  TensorFlow's `tf.matmul` ([M, K] x [K, N]), which runs
                     oneDNN as the convolutions do (bfloat16: AVX512_BF16
                     where the CPU has it);
  int8               LiteRT's XNNPACK: a one-layer int8 .tflite file (a Dense
                     layer quantized as keras_resnet's export quantizes,
                     int8 weights and activations), on every core.
Each is the median of `--repeats` calls after a warm-up. It also prints, for
ResNet-50 (multiply-adds from keras_resnet.count_flops, 224x224), the img/s
that each rate would give if every layer ran at it: inference needs one
forward pass (2 FLOPs a multiply-add), training about three.

  python benchmarks/peak_cpu.py        # about 15 seconds on 2 cores
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_integer("size", 4096, "M = K = N of the float products.", lower_bound=64)
flags.DEFINE_integer("repeats", 7, "Timed calls per product (after 2 of warm-up).", lower_bound=1)
FLAGS = flags.FLAGS
INT8_SHAPE = (1024, 2048, 2048)  # M, K, N: 4.3 G multiply-adds


def _median_s(call, repeats: int) -> float:
    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def float_matmul_gflops(dtype: str, size: int, repeats: int) -> float:
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_normal((size, size), seed=(0, 0)), dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a)[:1, :1]))  # waits for the product
    return 2 * size**3 / _median_s(lambda: product().numpy(), repeats) / 1e9


def int8_matmul_gmacs(repeats: int, threads: int) -> float:
    import keras
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    m, k, n = INT8_SHAPE
    inputs = keras.Input((k,))
    model = keras.Model(inputs, keras.layers.Dense(n)(inputs))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = lambda: (
            [rng.normal(size=(m, k)).astype("float32")] for _ in range(4))
        content = converter.convert()
    interpreter = Interpreter(model_content=content, num_threads=threads)
    (inp,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inp["index"], [m, k])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], rng.normal(size=(m, k)).astype("float32"))
    return m * k * n / _median_s(interpreter.invoke, repeats) / 1e9


def main(argv):
    del argv
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the programs do, before TensorFlow
    import keras_resnet

    multiply_adds = keras_resnet.count_flops(keras_resnet.ResNet50(weights=None)) / 1e9
    threads = os.cpu_count()
    rows = [
        ("float32 tf.matmul", "GFLOP/s", float_matmul_gflops("float32", FLAGS.size, FLAGS.repeats)),
        ("bfloat16 tf.matmul", "GFLOP/s", float_matmul_gflops("bfloat16", FLAGS.size, FLAGS.repeats)),
        (f"int8 XNNPACK, {threads} threads", "GMAC/s", int8_matmul_gmacs(FLAGS.repeats, threads)),
        ("int8 XNNPACK, 1 thread", "GMAC/s", int8_matmul_gmacs(FLAGS.repeats, 1)),
    ]
    print(f"ResNet-50 at 224x224: {multiply_adds:.3f} G multiply-adds a forward pass")
    print(f"{'product':<26} {'rate':>8} {'unit':<8} {'R50 infer img/s':>15} {'R50 train img/s':>15}")
    for name, unit, rate in rows:
        flops = rate if unit == "GFLOP/s" else 2 * rate  # a multiply-add is 2 FLOPs
        infer = flops / (2 * multiply_adds)
        print(f"{name:<26} {rate:8.1f} {unit:<8} {infer:15.1f} {infer / 3:15.1f}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app.run(main)
