"""Fig. 7's outputs: the std of every 3x3 layer's response, on the test split,
of each trained run (keras_resnet.reproduce.responses), plain against residual."""

import os

import keras

from keras_resnet.data import augment
from keras_resnet.data import sources
from keras_resnet.reproduce import report
from keras_resnet.reproduce import responses
from keras_resnet.reproduce.cifar import Options
from keras_resnet.reproduce.runs import RunResult


def _test_images(result: RunResult, options: Options, image_size: int, num_classes: int):
    """The run's test split as batches of RGB pixels, as the model takes them."""
    split = sources.eval_split(options.dataset, result.spec.split, image_size=image_size,
                               num_classes=num_classes, data_dir=options.data_dir)
    # The CIFAR nets' test view: the whole image at the model's size.
    return split.examples.map(lambda image, _: augment.resize_to(image, image_size)).batch(100)


def outputs(results: list[RunResult], output_dir: str, options: Options) -> dict:
    """fig7.png, fig7.csv/.md (each run's std per layer, in network order);
    returns the numbers for summary.json."""
    series, rows = {}, []
    for result in results:
        model = keras.saving.load_model(os.path.join(result.spec.config.model_dir, "model.keras"))
        size = model.input_shape[1]
        stds = responses.response_stds(model, _test_images(result, options, size,
                                                           model.output_shape[-1]))
        series[result.spec.name] = [std for _, std in stds]
        rows += [{"run": result.spec.name, "index": i, "layer": name, "std": std}
                 for i, (name, std) in enumerate(stds, 1)]
    report.save_figure(responses.fig7_figure(series), os.path.join(output_dir, "fig7.png"))
    report.write_table(os.path.join(output_dir, "fig7"), ["run", "index", "layer", "std"], rows,
                       formats={"std": "{:.4f}"})
    return {"responses": series}
