"""`snnlab compare`'s report: accuracy vs T per method beside accuracy vs energy relative to the ANN."""
import plotly.graph_objects as go

from .common import PALETTE, _figure


def compare_figure(result: dict) -> go.Figure:
    """Accuracy vs T per method (the ANN as a dashed line) beside accuracy vs energy relative to the ANN."""
    ann, config = result["ann"], result["config"]
    fig = _figure(f"ANN → SNN conversion: {config['model']} on {config['dataset']} ({config['activation']}), "
                  f"{result['test_images']} test images", cols=2, height=480, horizontal_spacing=0.1,
                  subplot_titles=("Accuracy vs time steps", "Accuracy vs energy"))
    for i, label in enumerate(config["methods"]):
        rows = [r for r in result["rows"] if r["method"] == label]
        hover = [f"{label}, T={r['timesteps']}<br>accuracy {r['accuracy']:.2f} %<br>"
                 f"{r['spikes_per_neuron']:.3f} spikes/neuron<br>E/E_ANN {r['energy_vs_ann']:.3f}" for r in rows]
        style = dict(name=label, legendgroup=label, mode="lines+markers", hovertext=hover, hoverinfo="text",
                     line=dict(color=PALETTE[i % len(PALETTE)]))
        fig.add_trace(go.Scatter(x=[r["timesteps"] for r in rows], y=[r["accuracy"] for r in rows], **style), 1, 1)
        fig.add_trace(go.Scatter(x=[r["energy_vs_ann"] for r in rows], y=[r["accuracy"] for r in rows],
                                 showlegend=False, **style), 1, 2)
    fig.add_hline(y=ann["accuracy"], line_dash="dash", line_color="black", row=1, col=1,
                  annotation_text=f"ANN {ann['accuracy']:.2f} %", annotation_position="bottom right")
    fig.add_trace(go.Scatter(x=[1.0], y=[ann["accuracy"]], name="ANN", mode="markers",
                             marker=dict(symbol="star", size=14, color="black"),
                             hovertext=[f"ANN: {ann['accuracy']:.2f} %, {ann['energy_uj']:.2f} µJ/image"],
                             hoverinfo="text"), 1, 2)
    fig.update_xaxes(title_text="time steps T", type="log", dtick=0.30103, row=1, col=1)
    fig.update_xaxes(title_text="energy E_SNN / E_ANN (ANN = 1)", type="log", row=1, col=2)
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=1)
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=2)
    fig.update_layout(width=1100)
    return fig
