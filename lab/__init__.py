"""The lab's web side: run supervision, layout, events, views, weights, REST.

``app.py`` composes these; nothing here loads a model or starts a server at import. This
package (with ``app.py``) is the only place that imports gradio.
"""
