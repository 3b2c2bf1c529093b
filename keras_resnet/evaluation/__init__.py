"""Scoring saved models (needs TensorFlow).

artefacts.py: the one loader of `.keras` files, SavedModels, `.tflite` files
and named models, each with its `ModelInfo`; checks.py: the checks that refuse
a broken one; protocols.py: the paper's test protocols and the metrics.
"""
