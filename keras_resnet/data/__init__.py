"""The data, on tf.data (needs TensorFlow): what the models are trained,
evaluated and served on.

splits.py: the splits every reader yields (`Split`, `Source`); sources.py:
the TFDS reader, the synthetic set, and the reader a data set's name picks;
folders.py: the image-folder reader;
fashion_mnist.py: Fashion-MNIST from Debian's IDX files, offline; images.py:
image sizes read from their headers; augment.py: the training augmentations
and the table of test views; pipeline.py: the training and validation
pipelines.
"""
