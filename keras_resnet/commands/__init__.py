"""The command-line programs: absl flags in, one library call, a report out.

train (`python train.py`, `keras-resnet-train`), evaluate (`python
evaluate.py`, `keras-resnet-evaluate`) and export (`python -m export`,
`keras-resnet-export`). Only these modules read flags.
"""
