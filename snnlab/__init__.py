"""snnlab: a Jupyter-first lab for ultra-low-latency spiking neural networks.

Read the modules bottom-up, beside the notebooks:
`files` ← `data`, `activations`, `neurons` ← `parallel` (devices, torch.distributed) ← `models` ← `convert`,
`simulate`, `analysis`, `energy`, `train` ← `train_snn` ← `reproduce` (paper configs), `viz` (one module per
notebook) ← `widgets`, `cli`.
"""
from .convert import RECIPES, adjusted, convert, fold_batchnorm, record_preactivations
from .neurons import Neuron, TimeBatched, clip_floor, if_step, reset
from .simulate import Probe, encode, evaluate_snn, simulate

__version__ = "0.1.0"
__all__ = ["RECIPES", "adjusted", "convert", "fold_batchnorm", "record_preactivations", "Neuron", "TimeBatched",
           "clip_floor", "if_step", "reset", "Probe", "encode", "evaluate_snn", "simulate"]
