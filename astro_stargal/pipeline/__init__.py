"""From images and positions to star probabilities: stamps, features, network inputs and inference.

The stages, in the order the data flow through them:

0. `refine_positions` moves each source to the centroid of its light (within
   a bounded radius), and `band_psfs` gives each band's PSF (given, measured
   from the table's point sources, or the model's reference) and the
   PSF validity flags;
1. `extract_stamps` cuts square stamps around many sources at once (the
   semantics of ``photutils.utils.CutoutImage``, without a Python object per
   source);
2. `measure_features` measures each band's catalog features on the stamps
   (forced aperture photometry, concentration, size, ellipticity) and, given
   the band's PSF (`PSFTables`), the source against its local PSF
   (SPREAD_MODEL, PSF-fit minus aperture magnitude, size and concentration
   excess);
3. `prepare_inputs` (`cut_stamps`, then `finish_inputs`) turns them into the
   network's inputs, with the ``sg_flags`` bits;
4. `predict_sources` runs a loaded model over a whole table in chunks and
   batches, and `find_blended` flags sources with a close, comparably bright
   neighbour.

The same routines serve inference, training and evaluation, so the three
cannot drift apart.
"""

from ._band_psfs import BandPSFs, band_psfs, reference_psf
from ._centroids import LARGE_SHIFT, MAX_SHIFT, refine_positions, windowed_centroids
from ._cutouts import extract_stamps, stamp_origin
from ._features import (
    APERTURE_RADII,
    FEATURE_NAMES,
    PSF_FEATURE_NAMES,
    aperture_masks,
    measure_features,
    measure_features_torch,
)
from ._inference import CHUNK_SIZE, default_batch_size, default_workers, predict_sources, run_network
from ._inputs import (
    IMAGE_SOFTENING,
    KNOWN_FEATURES,
    LOW_SNR_THRESHOLD,
    BandConstants,
    DeviceImages,
    PreparedInputs,
    RawStamps,
    cut_stamps,
    finish_inputs,
    locate_sources,
    pixel_positions_by_band,
    prepare_inputs,
    shared_grids,
)
from ._neighbours import BLEND_CONTRAST, BLEND_RADIUS, MAX_NEIGHBOURS, find_blended
from ._psf_tables import PSFTables

__all__ = [
    "APERTURE_RADII",
    "BLEND_CONTRAST",
    "BLEND_RADIUS",
    "CHUNK_SIZE",
    "FEATURE_NAMES",
    "IMAGE_SOFTENING",
    "KNOWN_FEATURES",
    "LARGE_SHIFT",
    "LOW_SNR_THRESHOLD",
    "MAX_NEIGHBOURS",
    "MAX_SHIFT",
    "PSF_FEATURE_NAMES",
    "BandConstants",
    "BandPSFs",
    "DeviceImages",
    "PSFTables",
    "PreparedInputs",
    "RawStamps",
    "aperture_masks",
    "band_psfs",
    "cut_stamps",
    "default_batch_size",
    "default_workers",
    "extract_stamps",
    "find_blended",
    "finish_inputs",
    "locate_sources",
    "measure_features",
    "measure_features_torch",
    "pixel_positions_by_band",
    "predict_sources",
    "prepare_inputs",
    "reference_psf",
    "refine_positions",
    "run_network",
    "shared_grids",
    "stamp_origin",
    "windowed_centroids",
]
