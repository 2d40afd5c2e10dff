"""Sphinx configuration of the companion's site (``make site``; see ``mripkg/site.py``).

The source tree is assembled by ``python -m mripkg.app.site`` in ``build/site-src/<profile>/`` and
rendered with ``-c docs``: executed notebooks are shown as they are (myst-nb, never executed
here), Markdown pages through MyST.
"""

project = "mripkg"
author = "mripkg contributors"
copyright = "2026, mripkg contributors"

extensions = ["myst_nb"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # pages show the outputs of the run; nothing runs here
nb_merge_streams = True
# widget views are replaced by static snapshots before the build (mripkg.app.site.static_widgets),
# so no widget JavaScript is loaded from a CDN: the pages work offline
nb_ipywidgets_js: dict = {}
suppress_warnings = ["myst.header"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "furo"
html_title = "mripkg: instabilities of diffusion models in MRI"
html_show_sourcelink = False
html_copy_source = False
