"""Reference forward pass of a whole network, layer by layer, the obvious way.

No folding and no reordering: batch-norm is evaluated in float64 as written, sign after it,
pooling where the layer stands. A device model that folds batch-norm + sign into integer
thresholds and pools packed bits must give exactly these answers. Each layer type writes its
own reference (``Layer.reference_forward``); this module only chains them.
"""

from __future__ import annotations

import numpy as np


def forward(layers, x: np.ndarray) -> np.ndarray:
    """The network's output for batch ``x`` (uint8 pixels or floats, batch axis first)."""
    value = x
    for layer in layers:
        value = layer.reference_forward(value)
    return value
