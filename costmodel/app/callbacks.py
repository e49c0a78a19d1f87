"""What the page does when a control changes: compute the views once, draw them, serve downloads.

``compute`` is the only callback that calls the cost model; the others read its Store.
The callbacks are plain functions too, so tests call them without a browser.
"""

from __future__ import annotations

import json

from dash import Input, Output, State, dcc, html, no_update

from costmodel.app import figures
from costmodel.app.inputs import UPLOAD_PREFIX, AppInputs, decode_upload, gpu_from_yaml, gpu_choices, model_choices
from costmodel.app.layout import GRAPHS, VIEWS
from costmodel.app.tables import attention_table, fmt_bytes, fmt_time, parallel_table, serving_table
from costmodel.app.views import evaluate
from costmodel.models import model_from_yaml

def error_text(exc: Exception) -> str:
    from costmodel.cli.args import error_line

    return error_line(exc)


def compute(gpu, model, phase, batch, seq_len, rate_per_s, output_len, dtype, tensor_parallel, pipeline_parallel,
            attention_impl, gpu_uploads, model_uploads):
    """(views, error): every view of the question, or None and a one-line error naming the field."""
    for field, value in (("batch", batch), ("seq_len", seq_len), ("rate_per_s", rate_per_s),
                         ("output_len", output_len)):
        if value is None:  # a number box that is empty or holds no number
            return None, f"{field}: empty or not a number; a whole number >= 1 is accepted"
    try:
        inputs = AppInputs(gpu=gpu, model=model, phase=phase, batch=batch, seq_len=seq_len, dtype=dtype,
                           tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel,
                           attention_impl=attention_impl, rate_per_s=rate_per_s,
                           output_len=output_len)
        return evaluate(inputs, gpu_uploads, model_uploads), ""
    except ValueError as exc:
        return None, error_text(exc)


def render(views, style):
    """Cards, notes, figures and the attention table from the stored views."""
    empty = {"data": [], "layout": {"template": "plotly_white", "height": 380}}
    if not views:
        return ("-", "-", "-", "-", "", [], *([empty] * len(GRAPHS)), "", "", "")
    s = views["summary"]
    spec = _spec_for(views)
    draw = {"ops": lambda: figures.ops_figure(views, style), "timeline": lambda: figures.timeline_figure(views),
            "memory": lambda: figures.memory_figure(views), "attention": lambda: figures.attention_figure(views),
            "serving": lambda: figures.serving_figure(views), "parallel": lambda: figures.parallel_figure(views),
            "roofline": lambda: figures.roofline_view_figure(views, spec)}
    figs = [draw[key]() for key in GRAPHS]
    fits = f"{'yes' if s['fits'] else 'NO'}: {s['memory_bytes'] / s['gpu_memory_bytes']:.0%} of {fmt_bytes(s['gpu_memory_bytes'])}"
    source = (f"{s['model']} on {s['gpu_display_name']}, {s['phase']}, batch {s['batch']} x {s['seq_len']} tokens, "
              f"{s['dtype']}, TP {s['tensor_parallel']}, attention {s['attention_impl']}. Predicted by {s['source']}.")
    notes = [html.Li(n) for n in views["notes"]]
    return (fmt_time(s["time_s"]), f"{s['tokens_per_s']:,.0f}", fmt_bytes(s["memory_bytes"]), fits, source, notes,
            *figs, attention_table(views), serving_table(views), parallel_table(views))


_SPEC_CACHE: dict = {}


def _spec_for(views):
    """The spec whose roofs the roofline figure draws (bundled ones read once)."""
    from hardware_specs import load_gpu

    name = views["inputs"]["gpu"]
    if name.startswith(UPLOAD_PREFIX):  # the figure needs only the roofs; the uploaded text is in views
        return gpu_from_yaml(views["gpu_yaml"], name[len(UPLOAD_PREFIX):])
    if name not in _SPEC_CACHE:
        _SPEC_CACHE[name] = load_gpu(name)
    return _SPEC_CACHE[name]


def upload(contents, filename, options, uploads, kind: str):
    """Validate an uploaded YAML, hold its text, add it to the dropdown and select it."""
    if not contents:
        return no_update, no_update, no_update, ""
    try:
        text = decode_upload(contents)
        (gpu_from_yaml(text, filename) if kind == "gpu" else model_from_yaml(text))
    except ValueError as exc:
        return no_update, no_update, no_update, f"{filename}: {error_text(exc)}"
    value = UPLOAD_PREFIX + filename
    uploads = {**(uploads or {}), filename: text}
    base = gpu_choices() if kind == "gpu" else model_choices()
    extra = [{"label": f"{name} (uploaded)", "value": UPLOAD_PREFIX + name} for name in uploads]
    return base + extra, value, uploads, ""


def register(app) -> None:
    controls = ["gpu", "model", "phase", "batch", "seq-len", "rate", "output-len", "dtype", "tensor-parallel",
                "pipeline-parallel", "attention-impl"]

    @app.callback(Output("views", "data"), Output("error", "children"),
                  *[Input(c, "value") for c in controls],
                  State("gpu-uploads", "data"), State("model-uploads", "data"))
    def _compute(*args):
        views, error = compute(*args)
        if views is not None and views["inputs"]["gpu"].startswith(UPLOAD_PREFIX):
            views["gpu_yaml"] = args[-2][views["inputs"]["gpu"][len(UPLOAD_PREFIX):]]
        return views, error

    @app.callback(Output("summary-time", "children"), Output("summary-tokens", "children"),
                  Output("summary-memory", "children"), Output("summary-fits", "children"),
                  Output("summary-source", "children"), Output("notes", "children"),
                  *[Output(g, "figure") for g in GRAPHS.values()], Output("attention-table", "children"),
                  Output("serving-table", "children"), Output("parallel-table", "children"),
                  Input("views", "data"), Input("breakdown-style", "value"))
    def _render(views, style):
        return render(views, style)

    @app.callback(Output("seq-len-label", "children"), Input("phase", "value"))
    def _seq_label(phase):
        return "Cache length (tokens)" if phase in ("decode", "serving") else "Sequence length (tokens)"

    for kind in ("gpu", "model"):
        @app.callback(Output(kind, "options"), Output(kind, "value"), Output(f"{kind}-uploads", "data"),
                      Output("upload-error", "children", allow_duplicate=True),
                      Input(f"{kind}-upload", "contents"), State(f"{kind}-upload", "filename"),
                      State(kind, "options"), State(f"{kind}-uploads", "data"), prevent_initial_call=True)
        def _upload(contents, filename, options, uploads, kind=kind):
            return upload(contents, filename, options, uploads, kind)

    for key, _ in VIEWS:
        @app.callback(Output(f"download-{key}", "data"), Input(f"download-{key}-button", "n_clicks"),
                      State("views", "data"), prevent_initial_call=True)
        def _download(n_clicks, views, key=key):
            return download(views, key)


def download(views, key: str):
    """The dcc.Download payload of one view (its JSON), or nothing while there is no answer."""
    if not views:
        return no_update
    return dcc.send_string(json.dumps({"view": key, "inputs": views["inputs"], key: views[key]}, indent=1,
                                      allow_nan=False), f"ioaware-{key}.json")
