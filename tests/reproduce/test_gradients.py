"""keras_resnet.reproduce.gradients: the gradients at initialisation and the
kernel norms of fig6's runs (paper Sec. 4.1)."""

import dataclasses

import numpy as np

from keras_resnet.reproduce import gradients
from keras_resnet.training import run as run_lib
from keras_resnet.training import trainer

SMALL = dict(dataset="synthetic", recipe="cifar_paper", batch_size=16, image_size=16,
             synthetic_examples=64, strategy="one_device", verbose=0)


def test_the_initial_model_is_the_one_train_py_starts_from(tmp_path):
    # One step at a learning rate of 1e-12 moves no kernel by more than
    # ~1e-12: the trained model's kernels are train.py's initial ones.
    config = run_lib.Config(model="resnet20", train_steps=1, learning_rate=1e-12,
                            model_dir=str(tmp_path / "run"), **SMALL)
    result = trainer.train(config)
    model, images, labels = gradients.initial_model(config)
    assert images.shape == (16, 16, 16, 3) and labels.shape == (16, 10)
    ours, trained = gradients.kernels(model), gradients.kernels(result.model)
    assert len(ours) == 19  # 6n + 1 convs: option A shortcuts have no kernel (Sec. 4.2)
    for mine, theirs in zip(ours, trained):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-9)
    ours = gradients.kernel_norms(model)
    other, _, _ = gradients.initial_model(dataclasses.replace(config, seed=1))
    assert not np.allclose(gradients.kernel_norms(other), ours)


def test_gradients_at_initialisation_grow_towards_the_input_in_a_deep_plain_net_only(tmp_path):
    ratios = {}
    for model in ("plain20", "plain56", "resnet56"):
        config = run_lib.Config(model=model, model_dir=str(tmp_path / model), **SMALL)
        net, images, labels = gradients.initial_model(config)
        norms = gradients.gradient_norms(net, images, labels)
        assert len(norms) == len(gradients.kernels(net)) and (norms > 0).all()
        ratios[model] = norms[0] / norms[-1]
    # Measured on Fashion-MNIST's first batch: plain-20 2.3, plain-56 168, ResNet-56 1.3.
    assert ratios["plain56"] > 10 * ratios["plain20"], ratios
    assert ratios["resnet56"] < ratios["plain56"] / 10, ratios
