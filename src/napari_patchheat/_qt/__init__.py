"""The napari side of napari-patchheat: the only code that imports Qt, magicgui widgets or talks
to napari's viewer and layers.

``widget.PatchHeatWidget`` is the dock widget; it composes the run panel (``run_panel``, a run in
its own process watched by the core's ``run_watch``), the heatmap panel (``heatmap_panel``), the
patch inspector (``inspector``) and the grid preview (``preview``), over the slide a layer shows
(``slide_layer``). TensorFlow never runs in this process.
"""
