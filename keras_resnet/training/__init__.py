"""A training run (needs TensorFlow, except recipes.py, which needs only
Keras: a saved model's learning-rate schedule loads on any backend).

recipes.py: the paper's recipes as data and their schedule; run.py: `Config`
and the `Run` that decides every value of a run once; callbacks.py: history,
checkpoints, divergence, curves; backup.py: the epoch-end backup and the
restore from the newest intact state; distribute.py: strategies and BN
statistics across replicas; model.py: `build_model`, the network a run
trains, compiled; trainer.py: `train`, the steps of a run.
"""
