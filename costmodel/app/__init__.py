"""``ioaware app``: a local web page that answers "what does this step cost?" (Dash, optional extra).

``create_app()`` builds the Dash app, ``serve(port)`` runs it. Dash is imported here, inside the
functions, so the rest of ioaware works without it; the values it shows come from
``costmodel.app.views`` (no Dash), the figures from ``costmodel.app.figures`` (plotly only).
"""

from __future__ import annotations

DASH_MISSING = "the web app needs Dash: pip install 'ioaware[app]' (dash >= 2.17)"


def create_app(defaults=None):
    """The Dash app, opening on ``defaults`` (an AppInputs; bundled defaults if None)."""
    try:
        import dash
    except ImportError:
        raise ImportError(DASH_MISSING) from None
    from pathlib import Path

    from costmodel.app import callbacks, layout
    from costmodel.app.inputs import AppInputs

    app = dash.Dash(__name__, title="ioaware", assets_folder=str(Path(__file__).parent / "assets"),
                    suppress_callback_exceptions=False)
    app.layout = layout.page(defaults or AppInputs())
    callbacks.register(app)
    return app


def serve(port: int = 8050, host: str = "127.0.0.1", debug: bool = False, defaults=None) -> None:
    create_app(defaults).run(host=host, port=port, debug=debug)
