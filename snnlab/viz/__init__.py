"""Plotly figures of the notebooks: one function per kind of figure, one `update_<kind>` per widget.

Every figure uses `TEMPLATE`, has a title, axis titles with units and hover text. A widget's figure is
built by `<kind>_figure(**knobs)` and changed in place by `update_<kind>(fig, **knobs)`, which calls the
library (neurons, convert, simulate, analysis) and sets the traces' data, so it serves a `go.Figure`
and a `go.FigureWidget` alike. Only this package imports plotly; `widgets.py` wires the update
functions to sliders. One module per notebook:

    neuron.py         00  raster, membrane traces, rate vs input (the clip-floor staircase)
    distributions.py  01  ANN training, pre-activations and each recipe's threshold
    errors.py         02  conversion error per layer and per T, accuracy vs T per recipe
    potential.py      03  V[0]: expected vs measured error, first spikes, accuracy
    training.py       04–05  BPTT curves, learned θ and λ, spikes and energy per layer, IIR stages
    ttfs.py           06  the log code, accuracy vs window K, log weights, TTFS spike rasters
    tradeoff.py       07  accuracy vs energy of every method, the Pareto front, energy per layer
    compare.py        `snnlab compare`'s HTML report
"""
from .common import DASHES, LOG, PALETTE, PART_COLORS, TEMPLATE, TIME, as_widget, energy_by_step, energy_note
from .compare import compare_figure
from .distributions import distribution_figure, preactivation_figure, training_figure, update_distribution
from .errors import (accuracy_bar_figure, accuracy_figure, conversion_error_figure, error_parts_figure,
                     error_vs_timesteps_figure, layer_error_figure, update_conversion_accuracy,
                     update_conversion_parts)
from .neuron import (RASTER_CURRENTS, RATE_CURRENTS, membrane_figure, neuron_figure, rate_figure, raster_figure,
                     update_neuron)
from .potential import (expected_error_figure, first_spike_figure, potential_figure, update_potential_accuracy,
                        update_potential_error)
from .training import (bptt_figure, energy_figure, record_traces, spike_rate_figure, spike_trace_figure,
                       stages_figure, threshold_leak_figure, update_spike_trace)
from .ttfs import log_code_figure, raster_traces, ttfs_figure, update_ttfs, weight_figure, window_figure
from .tradeoff import tradeoff_figure, update_tradeoff
