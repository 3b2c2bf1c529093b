"""A plain Flax (linen) ResNet-50 for `bench_gpu.py`: what a JAX user writes instead.

ResNet-50 as the Flax ImageNet example builds it, v1.5: the stride of a
downsampling bottleneck is on its 3x3 conv, not its first 1x1 (about 6% more
FLOPs than keras_resnet's v1, Table 1 of He et al.). Convolutions and BN run in
bfloat16 with float32 parameters and float32 BN statistics; the last BN of each
block starts at zero scale. One training step is cross-entropy, SGD with
momentum 0.9 and weight decay as an optimizer term (optax), jitted with its
state donated.

flax and optax are installed on the GPU machines; keras_resnet never imports
this, and neither is one of its dependencies.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

STAGES = (3, 4, 6, 3)  # bottlenecks per stage: ResNet-50 (Table 1)


class Bottleneck(nn.Module):
    filters: int
    strides: int
    conv: Callable[..., nn.Module]
    norm: Callable[..., nn.Module]

    @nn.compact
    def __call__(self, x):
        y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
        y = self.conv(self.filters, (3, 3), self.strides, padding=((1, 1), (1, 1)))(y)
        y = nn.relu(self.norm()(y))
        y = self.norm(scale_init=nn.initializers.zeros)(self.conv(4 * self.filters, (1, 1))(y))
        if x.shape != y.shape:  # projection shortcut, option B
            x = self.norm()(self.conv(4 * self.filters, (1, 1), self.strides)(x))
        return nn.relu(x + y)


class ResNet50(nn.Module):
    classes: int = 1000
    dtype: Any = jnp.bfloat16

    @nn.compact
    def __call__(self, x, train: bool):
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, dtype=self.dtype)
        x = nn.relu(norm()(conv(64, (7, 7), 2, padding=((3, 3), (3, 3)))(x)))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for stage, blocks in enumerate(STAGES):
            for index in range(blocks):
                strides = 2 if stage and not index else 1
                x = Bottleneck(64 * 2**stage, strides, conv, norm)(x)
        return nn.Dense(self.classes, dtype=self.dtype)(jnp.mean(x, axis=(1, 2)))


def init_step(images: jax.Array, classes: int, *, learning_rate: float, momentum: float,
              weight_decay: float) -> tuple[Callable, tuple]:
    """The jitted training step, `step(state, images, labels) -> (state, loss)`, which
    donates its state, and the initial state."""
    model = ResNet50(classes)
    variables = model.init(jax.random.key(0), images[:1], train=False)
    optimizer = optax.chain(optax.add_decayed_weights(weight_decay),
                            optax.sgd(learning_rate, momentum=momentum))
    state = (variables["params"], variables["batch_stats"],
             optimizer.init(variables["params"]))

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, images, labels):
        params, batch_stats, optimizer_state = state

        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": batch_stats},
                                          images, train=True, mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(
                logits.astype(jnp.float32), labels).mean()
            return loss, updates["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, optimizer_state = optimizer.update(grads, optimizer_state, params)
        return (optax.apply_updates(params, updates), batch_stats, optimizer_state), loss

    return step, state


def train_step(images: jax.Array, labels: jax.Array, classes: int,
               **optimizer_settings: float) -> Callable[[], jax.Array]:
    """One SGD step on the fixed batch per call of the result, which returns the loss
    without waiting for it (JAX dispatches asynchronously)."""
    step, state = init_step(images, classes, **optimizer_settings)

    def run() -> jax.Array:
        nonlocal state
        state, loss = step(state, images, labels)
        return loss

    return run
