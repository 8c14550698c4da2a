"""The parts of ``benchmarks/gpu_check.py`` (the GPU study of issue 30), one module per
section: :mod:`.plan` (sizes per mode, the time budget), :mod:`.env`, :mod:`.models` (the
tiny models it trains and exports itself), :mod:`.training`, :mod:`.accuracy`,
:mod:`.speed` (model only and the JPEG pipeline) and :mod:`.report`."""
