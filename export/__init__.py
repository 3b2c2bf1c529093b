"""`python -m export --flags` in a checkout: keras_resnet.programs.export.

The export library is keras_resnet.export; `keras-resnet-export` is the same
program once the package is installed.
"""
