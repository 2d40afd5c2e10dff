"""Interactive exploration of the saved robustness results (notebook 06) and the axial-slice
scroller of notebook 01.

A :class:`Study` looks up perturbations, reconstructions and per-slice PSNR curves in the
``runs/<profile>`` caches notebooks 03-05 fill, else in the bundle
``results/<profile>/explorer.npz`` (:func:`export_bundle`), so nothing is recomputed when a
widget moves; what is in neither raises :class:`Missing`.

- :mod:`.study`: the data model: :class:`Study`, :class:`View`, :class:`Bundle`, the plan of a
  computation (:class:`Job`), the errors, :func:`load_study` and :func:`export_bundle`;
- :mod:`.panels`: the figure (:class:`Panels`) and its fixed colour scales;
- :mod:`.widgets`: the ipywidgets front end: :class:`Explorer` (:func:`explore`) and the slice
  scroller (:class:`SliceScroller`, :func:`slice_scroller`).

Imports run one way: study <- panels <- widgets.
"""

# not the explorer's own: kept as ``mripkg.app.explorer.AttackCache`` (tests build caches with it)
from ...attacks.cache import AttackCache as AttackCache
from .panels import (
    ARTIFACT_CLIM,
    EXPLORER_RC,
    IMAGE_CLIM,
    IMAGE_DELTA_CLIM,
    KSPACE_CLIM,
    Panels,
)
from .study import (
    BUNDLE_FORMAT,
    CURVE_FILES,
    RANDOM,
    SOURCES,
    TARGETS,
    Bundle,
    BundleMismatch,
    ExplorerError,
    Job,
    Missing,
    Study,
    View,
    describe_plan,
    duration,
    eps_tag,
    export_bundle,
    load_study,
)
from .widgets import Explorer, SliceScroller, explore, slice_scroller

__all__ = [
    "ARTIFACT_CLIM",
    "BUNDLE_FORMAT",
    "CURVE_FILES",
    "EXPLORER_RC",
    "IMAGE_CLIM",
    "IMAGE_DELTA_CLIM",
    "KSPACE_CLIM",
    "BundleMismatch",
    "RANDOM",
    "SOURCES",
    "TARGETS",
    "Bundle",
    "Job",
    "Explorer",
    "ExplorerError",
    "Missing",
    "Panels",
    "SliceScroller",
    "Study",
    "View",
    "describe_plan",
    "duration",
    "eps_tag",
    "explore",
    "export_bundle",
    "load_study",
    "slice_scroller",
]
