"""Parts of the ``segment`` task, built on :mod:`vision_tasks.tasks._detect`.

- :mod:`.head`: the prototype net (a few full-image mask bases at stride 4) and the
  per-point coefficient branches, added to the detector's neck and dense head;
- :mod:`.loss`: the detection loss plus a per-object mask loss, trained on the detector's
  own assignment;
- :mod:`.postprocess`: masks assembled for the kept detections inside the graph (a
  coefficient-prototype product, a sigmoid and a crop to the box).

The leading underscore keeps this package out of ``available_tasks()``.
"""
