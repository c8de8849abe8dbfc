"""Resource faults: a GPU out-of-memory error halves the batch instead of failing."""

import warnings

import numpy as np
import torch

from astro_stargal import StarGalaxyWarning
from astro_stargal.pipeline import _inference as inference


def test_out_of_memory_halves_the_batch_once_and_keeps_every_result(classify, field, monkeypatch):
    table = field.table()
    table = table[np.repeat(np.arange(len(table)), 40)]
    expected = classify(table, field.images(), batch_size=16)

    real_forward = inference._forward
    calls = []

    def forward_that_fits_16_sources(model, batch, constants, device_images=None):
        calls.append(len(batch))
        if len(batch) > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(model, batch, constants, device_images)

    monkeypatch.setattr(inference, "_forward", forward_that_fits_16_sources)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = classify(table, field.images(), batch_size=64)

    out_of_memory = [
        w for w in caught if issubclass(w.category, StarGalaxyWarning) and "out of memory" in str(w.message)
    ]
    assert len(out_of_memory) == 1
    assert max(calls[2:]) <= 16, "the halved batch size is kept for the rest of the run"
    np.testing.assert_array_equal(result["p_star"], expected["p_star"])
    np.testing.assert_array_equal(result["sg_flags"], expected["sg_flags"])
