"""Architecture tests: paper Table 1 / Sec. 4.2 structure and the keras.applications API."""

import inspect
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import models
from keras_resnet.models import layers


def _layers_of(model, cls):
    return [layer for layer in model.layers if isinstance(layer, cls)]


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_layer_names_equal_keras_applications(depth):
    ours = keras_resnet.get_model(f"resnet{depth}")
    theirs = getattr(keras.applications, f"ResNet{depth}")(weights=None)
    names = lambda m: [l.name for l in m.layers if not isinstance(l, keras.layers.InputLayer)]
    assert names(ours) == names(theirs)


# The 18 builders keras_resnet exports, as docs/models.md lists them.
BUILDERS = [
    "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "Plain18", "Plain34",
    "ResNet20", "ResNet32", "ResNet44", "ResNet56", "ResNet110", "ResNet1202",
    "Plain20", "Plain32", "Plain44", "Plain56", "Plain110",
]


def test_list_models_and_get_model():
    names = keras_resnet.list_models()
    assert len(names) == len(set(names)) == 22
    assert names[:5] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert {b.lower() for b in BUILDERS} <= set(names)
    model = keras_resnet.get_model("ResNet-20")
    assert model.name == "resnet20" and model.output.shape == (None, 10)


@pytest.mark.parametrize("public", BUILDERS)
def test_public_builder_signature_is_resnets(public):
    builder = getattr(keras_resnet, public)
    assert builder.__name__ == public and builder.__module__ == "keras_resnet.models.applications"
    assert "paper" in builder.__doc__
    # keras.applications defaults: "imagenet" weights where they are published.
    published = public in ("ResNet50", "ResNet101", "ResNet152")
    params = list(inspect.signature(keras_resnet.ResNet).parameters.values())
    assert params[0].name == "variant"
    expected = [
        p.replace(default="imagenet" if published else None) if p.name == "weights" else p
        for p in params[1:]
    ]
    assert inspect.signature(builder) == inspect.signature(keras_resnet.ResNet).replace(
        parameters=expected
    )


@pytest.mark.parametrize("public", BUILDERS)
def test_public_builder_passes_every_argument_to_resnet(public, monkeypatch):
    # Each builder builds its own variant, all arguments passed through
    # (the variants' parameter counts are checked in test_complexity.py).
    calls = []
    monkeypatch.setattr(
        keras_resnet.models.applications, "ResNet", lambda *args, **kwargs: calls.append((args, kwargs))
    )
    params = list(inspect.signature(keras_resnet.ResNet).parameters)[1:]
    positional, keyword = params[:8], params[8:]
    getattr(keras_resnet, public)(*positional, **{p: p for p in keyword})
    arguments = inspect.signature(keras_resnet.ResNet).bind(*calls[0][0], **calls[0][1]).arguments
    assert arguments == {"variant": public.lower(), **{p: p for p in params}}


def test_public_builders_positional_arguments():
    model = keras_resnet.ResNet50(False, None, None, (64, 64, 3), "avg")
    assert model.output.shape == (None, 2048)


@pytest.mark.parametrize("name", [n for n in models.VARIANTS if not n.endswith("1202")])
def test_depth_counts_weighted_layers(name):
    # Depth counts convs and the fc layer; projection shortcuts are extra (Table 1).
    model = keras_resnet.get_model(name)
    weighted = _layers_of(model, (keras.layers.Conv2D, keras.layers.Dense))
    projections = [l for l in weighted if l.name.endswith("_0_conv")]
    assert len(weighted) - len(projections) == int(name.lstrip("resnetplain"))


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20", "plain20"])
def test_bn_after_every_conv_and_relu_after_add(name):
    model = keras_resnet.get_model(name)
    for conv in _layers_of(model, keras.layers.Conv2D):
        consumers = [n.operation for n in conv._outbound_nodes]
        assert [type(c) for c in consumers] == [layers.BatchNormalization], conv.name
        assert not conv.use_bias
    adds = _layers_of(model, keras.layers.Add)
    for add in adds:
        (consumer,) = [n.operation for n in add._outbound_nodes]
        assert consumer.name == add.name.replace("_add", "_out")
        assert consumer.get_config()["activation"] == "relu"
    blocks = sum(models.VARIANTS[name].blocks_per_stage)
    assert len(adds) == (blocks if models.VARIANTS[name].residual else 0)


def test_shortcut_options_parameters():
    # Sec. 3.3: A is parameter-free, B adds projections where dims grow, C everywhere.
    count = lambda name, **kw: keras_resnet.get_model(name, **kw).count_params()
    plain = count("plain34")
    a, b, c = (count("resnet34", shortcut=option) for option in "ABC")
    assert a == plain < b < c
    cifar_a = keras_resnet.ResNet20(shortcut="A")
    assert cifar_a.count_params() == keras_resnet.Plain20().count_params()
    assert _layers_of(cifar_a, keras_resnet.ZeroPadShortcut)
    assert not _layers_of(keras_resnet.ResNet20(shortcut="B"), keras_resnet.ZeroPadShortcut)


@pytest.mark.parametrize("axis, shape, dtype", [
    (-1, (4, 6, 6, 5), "float32"), (1, (4, 5, 6, 6), "float32"), (-1, (4, 6, 6, 5), "mixed_bfloat16"),
])
def test_fused_batch_norm_trains_as_keras_batch_norm_does(axis, shape, dtype):
    # keras_resnet's BN runs TensorFlow's fused kernel in training; Keras'
    # own is the reference: outputs, gradients and moving averages. Under the
    # mixed bfloat16 policy both round their outputs to bfloat16 (8 bits of
    # mantissa: a relative error up to 2**-8), and Keras computes in float32
    # between casts, where the kernel takes bfloat16 in and out.
    import tensorflow as tf

    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 2e-2, "atol": 2e-2}

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(3.0, 2.0, shape), tf.float32)
    upstream = tf.constant(rng.normal(size=shape), tf.float32)
    results = []
    for cls in (keras.layers.BatchNormalization, layers.BatchNormalization):
        bn = cls(axis=axis, momentum=0.9, epsilon=1e-5, dtype=dtype)
        bn.build(shape)
        bn.gamma.assign(np.linspace(0.5, 1.5, shape[axis]))
        bn.beta.assign(np.linspace(-1, 1, shape[axis]))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = bn(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
        grads = tape.gradient(loss, [x, bn.gamma.value, bn.beta.value])
        inference = bn(x, training=False)
        results.append([y, *grads, bn.moving_mean, bn.moving_variance, inference])
    for keras_value, fused_value in zip(*results):
        np.testing.assert_allclose(np.asarray(fused_value, "float32"),
                                   np.asarray(keras_value, "float32"), **tolerance)
    # Moving statistics moved, and inference uses them.
    assert not np.allclose(np.asarray(results[1][-2]), 0.0)
    assert not np.allclose(np.asarray(inference, "float32"), np.asarray(results[1][0], "float32"),
                           atol=1e-1)
    # The fused kernel is what ran, on the activations in the compute dtype,
    # in training and at inference.
    for training in (True, False):
        graph = tf.function(lambda x: bn(x, training=training)).get_concrete_function(x).graph
        (fused,) = [op for op in graph.get_operations() if op.type == "FusedBatchNormV3"]
        assert fused.get_attr("is_training") == training
        assert fused.inputs[0].dtype.name == bn.compute_dtype
        assert fused.outputs[0].dtype.name == bn.compute_dtype


def test_fused_batch_norm_is_keras_own_where_it_cannot_fuse():
    # Masked or renormalised BN, and other ranks, take Keras' code path.
    bn = layers.BatchNormalization(renorm=True)
    assert not bn._fusable(keras.ops.zeros((2, 3, 3, 4)), None)
    assert not layers.BatchNormalization()._fusable(keras.ops.zeros((2, 4)), None)
    assert layers.BatchNormalization()._fusable(keras.ops.zeros((2, 3, 3, 4)), None)


def _op_types_of_gradient(layer, x):
    """Op types of the graph that computes `layer`'s training output and its
    gradients with respect to `x` and the kernel."""
    import tensorflow as tf

    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return tape.gradient(y, [x, layer.kernel.value])

    graph = tf.function(gradients).get_concrete_function(x).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("strides", [1, 2])
def test_1x1_conv_trains_in_bfloat16_as_keras_conv_does(strides):
    # keras_resnet's Conv2D takes a 1x1 kernel's gradient from a matmul in
    # bfloat16 training on the CPU; Keras' conv is the reference: output and
    # both gradients. Both round to bfloat16 (relative error up to 2**-8)
    # after summing in float32, in different orders. 7x7 inputs: a stride of
    # 2 reads 4x4 of the 7x7 positions, the last row and column included.
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 7, 7, 16)), tf.float32)
    size = 4 if strides == 2 else 7
    upstream = tf.constant(rng.normal(size=(3, size, size, 8)), tf.float32)
    kernel = rng.normal(size=(1, 1, 16, 8)) / 4
    results = []
    for cls in (keras.layers.Conv2D, layers.Conv2D):
        conv = cls(8, 1, strides=strides, use_bias=False, dtype="mixed_bfloat16")
        conv.build(x.shape)
        conv.kernel.assign(kernel)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = conv(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
        results.append([y, *tape.gradient(loss, [x, conv.kernel.value])])
    for keras_value, ours in zip(*results):
        keras_value = np.asarray(keras_value, "float32")
        assert ours.shape == keras_value.shape
        np.testing.assert_allclose(np.asarray(ours, "float32"), keras_value, rtol=2e-2,
                                   atol=2e-2 * np.abs(keras_value).max())
    # The matmul is what ran; in float32 (or at inference) Keras' conv gradient runs.
    assert "MatMul" in _op_types_of_gradient(conv, x)
    assert "Conv2DBackpropFilter" not in _op_types_of_gradient(conv, x)
    float32 = layers.Conv2D(8, 1, strides=strides, use_bias=False)
    assert "Conv2DBackpropFilter" in _op_types_of_gradient(float32, x)
    assert "MatMul" not in _op_types_of_gradient(float32, x)
    assert not layers.Conv2D(8, 3, dtype="mixed_bfloat16")._matmul_weight_gradient()


def test_bfloat16_resnet50_training_takes_every_1x1_kernel_gradient_from_a_matmul():
    # Table 1's ResNet-50: 36 1x1 convs (32 in the blocks, 4 projections),
    # 16 3x3 convs and the 7x7 stem; the training flag reaches each conv.
    import tensorflow as tf

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras_resnet.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    finally:
        keras.config.set_dtype_policy(previous)

    def gradients(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(model(x, training=True), tf.float32))
        return tape.gradient(loss, model.trainable_variables)

    x = tf.zeros((2, 32, 32, 3))
    ops = tf.function(gradients).get_concrete_function(x).graph.get_operations()
    filters = [op for op in ops if op.type == "Conv2DBackpropFilter"]
    assert sorted(tuple(op.outputs[0].shape[:2]) for op in filters) == [(3, 3)] * 16 + [(7, 7)]
    # The 36 kernel gradients, and the classifier's product and its two gradients.
    assert len([op for op in ops if op.type == "MatMul"]) == 36 + 3


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_option_a_shortcut_subsamples_and_pads(data_format):
    import tensorflow as tf

    x = np.arange(2 * 5 * 7 * 3, dtype="float32").reshape(2, 5, 7, 3)  # odd sides
    upstream = np.random.default_rng(0).normal(size=(2, 3, 4, 8)).astype("float32")
    to_layout = (lambda a: a) if data_format == "channels_last" else (
        lambda a: np.transpose(a, (0, 3, 1, 2)))
    layer = keras_resnet.ZeroPadShortcut(8, strides=2, data_format=data_format)
    inputs = tf.constant(to_layout(x))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = layer(inputs)
        loss = tf.reduce_sum(y * to_layout(upstream))
    y = np.asarray(y)
    if data_format == "channels_first":
        y = np.transpose(y, (0, 2, 3, 1))
    assert y.shape == (2, 3, 4, 8)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    assert not y[..., 3:].any()
    # The gradient goes to the kept pixels only, unchanged.
    expected = np.zeros_like(x)
    expected[:, ::2, ::2, :] = upstream[..., :3]
    np.testing.assert_array_equal(np.asarray(tape.gradient(loss, inputs)), to_layout(expected))


@pytest.mark.parametrize("version,strided", [("v1", "conv3_block1_1_conv"), ("v1.5", "conv3_block1_2_conv")])
def test_bottleneck_stride_version(version, strided):
    model = keras_resnet.get_model("resnet50", version=version, include_top=False)
    strides = {l.name: l.strides for l in _layers_of(model, keras.layers.Conv2D)}
    assert strides[strided] == (2, 2)
    other = {"conv3_block1_1_conv", "conv3_block1_2_conv"} - {strided}
    assert strides[other.pop()] == (1, 1)


@pytest.mark.parametrize(
    "pooling,expected", [(None, (2, 2, 3, 512)), ("avg", (2, 512)), ("max", (2, 512))]
)
def test_feature_extractor_shapes_non_square(pooling, expected):
    model = keras_resnet.ResNet18(include_top=False, pooling=pooling, input_shape=(None, None, 3))
    x = np.random.RandomState(0).uniform(0, 255, (2, 64, 96, 3)).astype("float32")
    assert model.predict(x, verbose=0).shape == expected


@pytest.mark.parametrize("channels", [1, 4])
def test_other_channel_counts(channels):
    model = keras_resnet.ResNet50(weights=None, include_top=False, input_shape=(33, 47, channels))
    assert model.output.shape == (None, 2, 2, 2048)  # ceil halving: 33->17->9->5->3->2
    x = np.zeros((1, 33, 47, channels), "float32")
    assert model.predict(x, verbose=0).shape == (1, 2, 2, 2048)


def test_input_tensor_and_top_at_other_sizes():
    inputs = keras.Input((40, 48, 3))
    model = keras_resnet.ResNet20(input_tensor=inputs, classes=7, classifier_activation=None)
    assert model.inputs[0] is inputs and model.output.shape == (None, 7)


def test_zero_init_residual():
    model = keras_resnet.ResNet20(zero_init_residual=True)
    bns = {l.name: l for l in _layers_of(model, keras.layers.BatchNormalization)}
    last = [n for n in bns if n.endswith("_2_bn")]
    assert len(last) == 9
    assert all(not np.any(keras.ops.convert_to_numpy(bns[n].gamma)) for n in last)
    assert np.all(keras.ops.convert_to_numpy(bns["conv2_block1_1_bn"].gamma) == 1)


def test_weight_decay_is_caffe_weight_decay():
    model = keras_resnet.ResNet20(weight_decay=1e-4)
    kernels = [l.kernel for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(model.losses) == len(kernels) == 20
    expected = sum(5e-5 * np.sum(np.square(keras.ops.convert_to_numpy(k))) for k in kernels)
    total = sum(float(keras.ops.convert_to_numpy(l)) for l in model.losses)
    np.testing.assert_allclose(total, expected, rtol=1e-5)
    assert not keras_resnet.ResNet20().losses


def test_mixed_precision_keeps_float32_scores():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras_resnet.ResNet20()
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("conv1_conv").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    probs = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_he_normal_initialisation():
    model = keras_resnet.ResNet18(weights=None, include_top=False)
    kernel = keras.ops.convert_to_numpy(model.get_layer("conv5_block2_2_conv").kernel)
    fan_in = 3 * 3 * 512
    np.testing.assert_allclose(kernel.std(), np.sqrt(2 / fan_in), rtol=0.05)


@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet18"])
def test_keras_file_round_trip_safe_mode(tmp_path, name):
    kwargs = {"input_shape": (64, 64, 3)} if name == "resnet18" else {}
    model = keras_resnet.get_model(name, weight_decay=1e-4, **kwargs)
    x = np.random.RandomState(1).uniform(0, 255, (2,) + model.input_shape[1:]).astype("float32")
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), restored.predict(x, verbose=0))
    assert len(restored.losses) == len(model.losses)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_forward_matches_tensorflow(tmp_path, backend):
    model = keras_resnet.ResNet20(shortcut="A")
    x = np.random.RandomState(2).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    weights = tmp_path / "r20.weights.h5"
    model.save_weights(str(weights))
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import numpy as np, keras, keras_resnet
        assert keras.backend.backend() == {backend!r}
        m = keras_resnet.ResNet20(shortcut="A", weights={str(weights)!r})
        y = m(np.load({str(tmp_path / "x.npy")!r}))
        np.save({str(tmp_path / "y.npy")!r}, keras.ops.convert_to_numpy(y))
        """
    )
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    np.testing.assert_allclose(
        np.load(tmp_path / "y.npy"), model.predict(x, verbose=0), atol=1e-5
    )


def test_model_code_imports_only_keras_and_has_no_lambda_layer():
    # fused.py imports TensorFlow's kernel inside a function, on that backend
    # only; a Lambda layer would make saved models refuse safe loading.
    folder = os.path.join(os.path.dirname(keras_resnet.__file__), "models")
    modules = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    assert "resnet.py" in modules
    for module in modules:
        with open(os.path.join(folder, module)) as f:
            source = f.read()
        assert "Lambda(" not in source, module
        assert module == "fused.py" or "import tensorflow" not in source, module


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(name="resnet51"), "Unknown model name: 'resnet51'. Available: resnet18, resnet34"),
        (dict(name="resnet50", weights="imagenet", classes=10), "classes=10"),
        (dict(name="resnet50", input_shape=(31, 64, 3)), "at least 32x32"),
        (dict(name="resnet20", input_shape=(3, 32, 3)), "at least 4x4"),
        (dict(name="resnet34", shortcut="D"), "Unknown shortcut option: 'D'. Accepted: A, B, C"),
        (dict(name="resnet50", version="v2"), "Unknown version: 'v2'"),
        (dict(name="resnet20", weights="imagenet"), "resnet20 has no published weights ('imagenet' "
                                                    "are weights of resnet101, resnet152, resnet18"),
        (dict(name="resnet18", weights="imagenet", version="v1.5"), "version='v1.5'"),
        (dict(name="resnet50", weights="imagenet", shortcut="C"), "shortcut='C'"),
        (dict(name="resnet50", weights="/no/such/file.h5"), "weights='/no/such/file.h5'"),
        (dict(name="resnet50", pooling="mean", include_top=False), "pooling='mean'"),
        (dict(name="plain20", zero_init_residual=True), "plain net"),
        (dict(name="resnet20", weight_decay=-1.0), "weight_decay=-1.0"),
        (dict(name="resnet50", weights="imagenet", classifier_activation="relu"), "'relu'"),
        (dict(name="resnet50", weights="imagenet", input_shape=(224, 224, 1)), "3 input channels"),
    ],
)
def test_clear_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        keras_resnet.get_model(kwargs.pop("name"), **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "input_shape",
    [(32, 32, 0), (32, 32, -3), (0, 32, 3), (32, -32, 3), (32, 32), (32, 32, 3, 1), 32, "32x32",
     (32.0, 32, 3), (32, 32, None), (32, 32, True)],
)
def test_bad_input_shape_is_named(input_shape):
    # keras.applications' wording; Keras alone built (32, 32, 0) into a model.
    with pytest.raises(ValueError) as info:
        keras_resnet.get_model("resnet20", input_shape=input_shape)
    assert str(info.value) == (
        "`input_shape` must be a tuple of three integers (height, width, channels), each >= 1; "
        f"height and width may be None (any size). Received: input_shape={input_shape!r}"
    )


@pytest.mark.parametrize(
    "input_shape,expected",
    [([40, 48, 3], (40, 48, 3)), ((np.int64(40), np.int64(48), np.int64(1)), (40, 48, 1)),
     ((None, None, 3), (None, None, 3))],
)
def test_input_shapes_keras_applications_accepts(input_shape, expected):
    model = keras_resnet.ResNet20(include_top=False, input_shape=input_shape)
    assert model.input_shape[1:] == expected


@pytest.mark.parametrize("classes", [0, -1, "10", 2.5, True])
def test_bad_classes_is_named(classes):
    # Keras' own error would name Dense's `units`, not the argument.
    with pytest.raises(ValueError) as info:
        keras_resnet.get_model("resnet20", classes=classes)
    assert str(info.value) == ("`classes` must be an integer >= 1, the number of classes the top "
                               f"predicts. Received: classes={classes!r}")


def test_classes_keras_applications_accepts():
    # A NumPy integer too (Dense alone refuses it).
    assert keras_resnet.ResNet20(classes=np.int64(7)).output.shape == (None, 7)
    # Without the top `classes` is not used, as in keras.applications.
    assert keras_resnet.ResNet20(include_top=False, classes=0).output.shape == (None, None, None, 64)


def test_weights_directory_is_named_as_such(tmp_path):
    # Once called "corrupt or unreadable", after the model was built.
    for call in (lambda: keras_resnet.get_model("resnet20", weights=str(tmp_path)),
                 lambda: keras_resnet.models.weights.read_weights(str(tmp_path))):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == (
            "weights must be a file, not a directory: a Keras '.weights.h5' or '.keras' file, or "
            f"an HDF5 file in the keras.applications layout. Received: weights='{tmp_path}'"
        )
