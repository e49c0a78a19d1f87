"""The page: controls on the left, the answer and its views on the right (Dash components only).

Element ids are the page's interface: callbacks.py fills them and the browser tests read them.
"""

from __future__ import annotations

from dash import dcc, html

from costmodel.app.inputs import AUTO, DTYPES, PHASES, TENSOR_PARALLEL, AppInputs, attention_choices, gpu_choices, model_choices

#: (view key, title) of every downloadable view, in page order
VIEWS = (("summary", "Summary"), ("ops", "Per-op breakdown"), ("timeline", "Step timeline"),
         ("memory", "Memory"), ("attention", "Attention bytes per level"), ("roofline", "Roofline"),
         ("serving", "Serving (simulated requests)"), ("parallel", "Parallelism (TP x PP)"))
GRAPHS = {"ops": "fig-ops", "timeline": "fig-timeline", "memory": "fig-memory", "attention": "fig-attention",
          "serving": "fig-serving", "parallel": "fig-parallel", "roofline": "fig-roofline"}


def _field(label: str, control, label_id: str | None = None) -> html.Div:
    return html.Div([html.Label(label, id=label_id) if label_id else html.Label(label), control], className="field")


def _upload(id_: str, what: str) -> dcc.Upload:
    return dcc.Upload(id=id_, children=html.Div(["or drop / ", html.A("choose"), f" a {what} YAML"]),
                      className="upload", multiple=False)


def controls(defaults: AppInputs) -> html.Div:
    return html.Div(className="controls", children=[
        html.H2("What-if"),
        _field("GPU", dcc.Dropdown(id="gpu", options=gpu_choices(), value=defaults.gpu, clearable=False)),
        _upload("gpu-upload", "GPU spec"),
        _field("Model", dcc.Dropdown(id="model", options=model_choices(), value=defaults.model, clearable=False)),
        _upload("model-upload", "model"),
        _field("Phase", dcc.RadioItems(id="phase", options=list(PHASES), value=defaults.phase, inline=True)),
        _field("Batch (sequences)", dcc.Input(id="batch", type="number", step=1, value=defaults.batch,
                                             debounce=True)),
        _field("Sequence length (tokens)", dcc.Input(id="seq-len", type="number", step=1,
                                                    value=defaults.seq_len, debounce=True), label_id="seq-len-label"),
        _field("Serving: requests per second", dcc.Input(id="rate", type="number", value=defaults.rate_per_s,
                                                         debounce=True)),
        _field("Serving: output tokens per request", dcc.Input(id="output-len", type="number", step=1,
                                                               value=defaults.output_len, debounce=True)),
        _field("dtype (weights, activations, KV cache)",
               dcc.Dropdown(id="dtype", options=list(DTYPES), value=defaults.dtype, clearable=False)),
        _field("Tensor parallel (GPUs)", dcc.Dropdown(id="tensor-parallel", options=list(TENSOR_PARALLEL),
                                                      value=defaults.tensor_parallel, clearable=False)),
        _field("Pipeline parallel (stages)", dcc.Dropdown(id="pipeline-parallel", options=list(TENSOR_PARALLEL),
                                                          value=defaults.pipeline_parallel, clearable=False)),
        _field("Attention implementation", dcc.Dropdown(id="attention-impl", options=[
            {"label": "auto (the step's SDPA backend)", "value": AUTO}, *attention_choices()],
                                                        value=defaults.attention_impl, clearable=False)),
        _field("Breakdown as", dcc.RadioItems(id="breakdown-style", options=["bar", "treemap"], value="bar",
                                              inline=True)),
        html.Div(id="upload-error", className="error"),
    ])


def _card(title: str, id_: str) -> html.Div:
    return html.Div(className="card", children=[html.Div(title, className="card-title"),
                                                html.Div("-", id=id_, className="card-value")])


def _panel(key: str, title: str, body) -> html.Div:
    return html.Div(className=f"panel panel-{key}", children=[
        html.Div(className="panel-head", children=[
            html.H3(title), html.Button("JSON", id=f"download-{key}-button", className="download", n_clicks=0)]),
        body, dcc.Download(id=f"download-{key}")])


def answer() -> html.Div:
    cards = html.Div(className="cards", children=[
        _card("step time", "summary-time"), _card("tokens / s", "summary-tokens"),
        _card("memory per GPU", "summary-memory"), _card("fits on the GPU", "summary-fits")])
    panels = [_panel("summary", "Summary", html.Div([cards, html.Div(id="summary-source", className="source")]))]
    for key, title in VIEWS[1:]:
        # The toolbar (zoom, PNG) only on the roofline, where zooming pays; elsewhere it covers the titles.
        body = [dcc.Graph(id=GRAPHS[key], config={"displaylogo": False, "displayModeBar": key == "roofline"})]
        if key in ("attention", "serving", "parallel"):
            body.append(html.Div(id=f"{key}-table"))
        panels.append(_panel(key, title, html.Div(body)))
    return html.Div(className="answer", children=[
        html.Div(id="error", className="error"), html.Ul(id="notes", className="notes"),
        html.Div(panels, className="grid")])


def page(defaults: AppInputs) -> html.Div:
    return html.Div(className="page", children=[
        html.Header([html.H1("ioaware: what does this step cost?"),
                     html.P("Predicted time, throughput, memory and bytes per memory level of one step of an LLM "
                            "on a GPU spec. Every view downloads as JSON.")]),
        html.Div(className="body", children=[controls(defaults), answer()]),
        dcc.Store(id="views"), dcc.Store(id="gpu-uploads", data={}), dcc.Store(id="model-uploads", data={}),
    ])
