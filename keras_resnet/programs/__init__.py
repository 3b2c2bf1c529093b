"""The command-line programs: absl flags in, one library call, a report out.

train (`python train.py`, `keras-resnet-train`), evaluate (`python
evaluate.py`, `keras-resnet-evaluate`), export (`python -m export`,
`keras-resnet-export`) and sizes (`python -m keras_resnet`); cli.py: their
start-up, flag help, one-line errors and exit codes. Only this package reads
flags.
"""
