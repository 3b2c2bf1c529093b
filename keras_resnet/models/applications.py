"""The public builders, one per variant of paper Table 1 and Sec. 4.2, as in keras.applications.

Each is `models.ResNet` with its variant filled in: the same arguments, in the
same order, with keras.applications' defaults (`weights="imagenet"` where
published weights exist: ResNet50/101/152). They are written out, not
generated, so that IDEs, `help()` and static type checkers see them whole.
"""

from collections.abc import Sequence

import keras

from keras_resnet.models.resnet import ResNet


def ResNet18(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """ResNet-18 of paper Table 1: basic blocks [2, 2, 2, 2], 1.8e9 FLOPs.

    Weights: None by default (He-normal initialisation); no published ones.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet18", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet34(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """ResNet-34 of paper Table 1: basic blocks [3, 4, 6, 3], 3.6e9 FLOPs.

    Weights: None by default (He-normal initialisation); no published ones.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet34", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet50(
    include_top: bool = True, weights: str | None = "imagenet",
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """ResNet-50 of paper Table 1: bottleneck blocks [3, 4, 6, 3], 3.8e9 FLOPs.

    Weights: "imagenet" by default, the published keras.applications ones.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet50", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet101(
    include_top: bool = True, weights: str | None = "imagenet",
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """ResNet-101 of paper Table 1: bottleneck blocks [3, 4, 23, 3], 7.6e9 FLOPs.

    Weights: "imagenet" by default, the published keras.applications ones.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet101", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet152(
    include_top: bool = True, weights: str | None = "imagenet",
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """ResNet-152 of paper Table 1: bottleneck blocks [3, 8, 36, 3], 11.3e9 FLOPs.

    Weights: "imagenet" by default, the published keras.applications ones.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet152", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def Plain18(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """plain-18 of paper Sec. 4.1 (Table 2, Fig. 4): ResNet-18 without shortcuts.

    Weights: None by default (He-normal initialisation); no published ones.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "plain18", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def Plain34(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """plain-34 of paper Sec. 4.1 (Table 2, Figs. 3-4): ResNet-34 without shortcuts.

    Weights: None by default (He-normal initialisation); no published ones.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "plain34", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet20(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR ResNet-20 of paper Sec. 4.2 (Table 6): 6n+2 layers, n=3.

    Defaults: 32x32 inputs, 10 classes, option A shortcuts; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet20", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet32(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR ResNet-32 of paper Sec. 4.2 (Table 6): 6n+2 layers, n=5.

    Defaults: 32x32 inputs, 10 classes, option A shortcuts; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet32", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet44(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR ResNet-44 of paper Sec. 4.2 (Table 6): 6n+2 layers, n=7.

    Defaults: 32x32 inputs, 10 classes, option A shortcuts; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet44", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet56(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR ResNet-56 of paper Sec. 4.2 (Table 6): 6n+2 layers, n=9.

    Defaults: 32x32 inputs, 10 classes, option A shortcuts; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet56", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet110(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR ResNet-110 of paper Sec. 4.2 (Table 6): 6n+2 layers, n=18.

    Defaults: 32x32 inputs, 10 classes, option A shortcuts; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet110", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def ResNet1202(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR ResNet-1202 of paper Sec. 4.2 (Table 6): 6n+2 layers, n=200.

    Defaults: 32x32 inputs, 10 classes, option A shortcuts; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "resnet1202", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def Plain20(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR plain-20 of paper Sec. 4.2 (Fig. 6): ResNet-20 without shortcuts.

    Defaults: 32x32 inputs, 10 classes; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "plain20", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def Plain32(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR plain-32 of paper Sec. 4.2 (Fig. 6): ResNet-32 without shortcuts.

    Defaults: 32x32 inputs, 10 classes; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "plain32", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def Plain44(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR plain-44 of paper Sec. 4.2 (Fig. 6): ResNet-44 without shortcuts.

    Defaults: 32x32 inputs, 10 classes; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "plain44", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def Plain56(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR plain-56 of paper Sec. 4.2 (Fig. 6): ResNet-56 without shortcuts.

    Defaults: 32x32 inputs, 10 classes; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "plain56", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )


def Plain110(
    include_top: bool = True, weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None, input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None, classes: int | None = None,
    classifier_activation: str | None = "softmax", name: str | None = None,
    *, shortcut: str | None = None, version: str = "v1",
    zero_init_residual: bool = False, weight_decay: float = 0.0,
) -> keras.Model:
    """CIFAR plain-110 of paper Sec. 4.2 (Fig. 6): ResNet-110 without shortcuts.

    Defaults: 32x32 inputs, 10 classes; weights None.
    Arguments: those of `keras_resnet.ResNet`, less `variant`.
    """
    return ResNet(
        "plain110", include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name, shortcut=shortcut, version=version,
        zero_init_residual=zero_init_residual, weight_decay=weight_decay,
    )
