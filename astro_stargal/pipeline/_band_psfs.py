"""Each band's PSF for a call: given, measured from the table's own stars, or the model's reference; and its checks.

`band_psfs` decides, band by band, which PSF the features are measured
against, and compares each PSF (node by node, so a region of a tile can fall
outside while the rest does not) with the range the model was trained on:

- a PSF the user gives (any form `~astro_stargal.psf.as_psf_model` takes) is
  used as it is;
- otherwise it is measured with `~astro_stargal.psf.measure_psf` from the
  table's isolated, unsaturated point sources;
- where that fails (too few stars), the model's reference PSF for the band (a
  circular Gaussian of its median training FWHM) stands in, and the band is
  named in a warning. Only when no band's PSF is known does any row get
  ``PSF_UNMEASURED``: then nothing in the image can be checked against the
  model's range.

A source gets ``PSF_OUT_OF_RANGE`` when the PSF at its place, in a band where
it lies on the image, has a FWHM or an ellipticity outside the model's
validity range for that band.
"""

import warnings
from dataclasses import dataclass

import numpy as np

from ..exceptions import StarGalaxyWarning
from ..flags import SourceFlag
from ..psf import PSFMeasurementError, PSFModel, as_psf_model, measure_psf
from ._inputs import pixel_positions_by_band

__all__ = ["BandPSFs", "band_psfs", "reference_psf"]

#: Samples per pixel of a reference PSF.
_REFERENCE_OVERSAMPLING = 4


@dataclass(frozen=True)
class BandPSFs:
    """The PSF of each band for one call, where each came from, and the flags it gives each row.

    Attributes
    ----------
    models : dict
        Band -> `~astro_stargal.psf.PSFModel` (measured, given, or the reference).
    origin : dict
        Band -> ``'measured'``, ``'given'`` or ``'reference'``.
    flags : 1D int32 `~numpy.ndarray`
        ``PSF_OUT_OF_RANGE`` and ``PSF_UNMEASURED`` bits per row.
    fwhm : dict
        Band -> ``(min, max)`` FWHM over the PSF's nodes in arcsec (measured or given bands).

    Examples
    --------
    >>> from astro_stargal.io import read_images, SourcePositions
    >>> images = read_images({"r": (np.random.default_rng(0).normal(size=(64, 64)), None)}, ["r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0]), y=np.array([30.0]), valid=np.array([True]))
    >>> yy, xx = np.mgrid[:15, :15] - 7.0
    >>> result = band_psfs(images, where, ["r"], pixel_scale=0.074, given={"r": np.exp(-(xx**2 + yy**2) / 1.3)})
    >>> result.origin, result.flags.tolist()
    ({'r': 'given'}, [0])
    """

    models: dict
    origin: dict
    flags: np.ndarray
    fwhm: dict


def reference_psf(fwhm_pixels):
    """A circular Gaussian effective PSF of the given FWHM (pixels), valid everywhere.

    Parameters
    ----------
    fwhm_pixels : float

    Returns
    -------
    psf : `~astro_stargal.psf.PSFModel`
        With ``origin='reference'``.

    Examples
    --------
    >>> abs(float(reference_psf(1.8).fwhm[0]) / 1.8 - 1) < 0.01
    True
    """
    sigma = fwhm_pixels / (2 * np.sqrt(2 * np.log(2))) * _REFERENCE_OVERSAMPLING
    half = int(np.ceil(6 * sigma))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    image = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    return PSFModel(image, [[0.0, 0.0]], oversampling=_REFERENCE_OVERSAMPLING, origin="reference")


def band_psfs(band_images, positions, bands, *, pixel_scale, given=None, reference_fwhm=None, validity=None):
    """Each present band's PSF (given, measured or reference) and the PSF flags of every row.

    Parameters
    ----------
    band_images : dict
        Band -> `~astro_stargal.io.BandImage`.
    positions : `~astro_stargal.io.SourcePositions`
        The table's sources (their point sources give the PSF).
    bands : sequence of str
        The model's bands.
    pixel_scale : float
        The model's arcsec per pixel (for images without a WCS).
    given : dict, optional
        Band -> a PSF in any form `~astro_stargal.psf.as_psf_model` takes.
    reference_fwhm : dict, optional
        Band -> FWHM in arcsec of the model's reference PSF, used where a
        band's PSF cannot be measured. Without it such a band has no PSF.
    validity : dict, optional
        ``{"psf_fwhm": {band: [min, max]}, "psf_ellipticity_max": {band: value}}``
        in arcsec, from the model's metadata; bands it does not name are not checked.

    Returns
    -------
    psfs : `BandPSFs`

    Raises
    ------
    ValueError
        If ``given`` names a band the model does not have.

    Examples
    --------
    >>> from astro_stargal.io import read_images, SourcePositions
    >>> images = read_images({"r": (np.random.default_rng(0).normal(size=(64, 64)), None)}, ["r"],
    ...                      zeropoints={"r": 25.0})
    >>> where = SourcePositions(sky=None, x=np.array([30.0]), y=np.array([30.0]), valid=np.array([True]))
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     psfs = band_psfs(images, where, ["r"], pixel_scale=0.074, reference_fwhm={"r": 0.13})
    >>> psfs.origin, [flag.name for flag in SourceFlag if psfs.flags[0] & flag]  # one source: no stars
    ({'r': 'reference'}, ['PSF_UNMEASURED'])
    >>> "could not be measured" in str(caught[0].message)
    True
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(bands))
    if unknown:
        msg = f"psf names band(s) {unknown} that the model does not have; its bands are {list(bands)}"
        raise ValueError(msg)
    pixels = pixel_positions_by_band(band_images, positions, bands)
    models, origin, fwhm, unmeasured = {}, {}, {}, {}
    for band, (x, y) in pixels.items():
        image = band_images[band]
        scale = _pixel_scale(image, pixel_scale)
        if band in given:
            models[band], origin[band] = as_psf_model(given[band], band, scale), "given"
        else:
            try:
                models[band] = measure_psf(
                    image.data, x, y, noise=image.noise, saturation=image.saturation, mask=image.mask
                )
                origin[band] = "measured"
            except PSFMeasurementError as error:
                unmeasured[band] = str(error)
                if reference_fwhm and band in reference_fwhm:
                    models[band], origin[band] = reference_psf(reference_fwhm[band] / scale), "reference"
                continue
        fwhm[band] = (float(models[band].fwhm.min() * scale), float(models[band].fwhm.max() * scale))

    flags = np.zeros(len(positions), dtype=np.int32)
    if unmeasured:
        _warn_unmeasured(unmeasured, origin)
    if pixels and not fwhm:
        on_some_image = np.zeros(len(positions), dtype=bool)
        for band, (x, y) in pixels.items():
            on_some_image |= _on_image(x, y, band_images[band].shape)
        flags[on_some_image] |= SourceFlag.PSF_UNMEASURED
    outside = _outside_range(band_images, pixels, models, origin, validity or {}, pixel_scale)
    for rows, _ in outside.values():
        flags[rows] |= SourceFlag.PSF_OUT_OF_RANGE
    if outside:
        described = "; ".join(description for _, description in outside.values())
        warnings.warn(
            f"the PSF is outside the range the model was trained on ({described}); "
            f"{int(np.count_nonzero(flags & SourceFlag.PSF_OUT_OF_RANGE))} source(s) get the "
            "PSF_OUT_OF_RANGE flag and their p_star may be unreliable",
            StarGalaxyWarning,
            stacklevel=3,
        )
    return BandPSFs(models=models, origin=origin, flags=flags, fwhm=fwhm)


def _on_image(x, y, shape):
    """True where a position lies on an image of ``shape`` (astropy pixel edges at -0.5)."""
    ny, nx = shape
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)


def _pixel_scale(image, default):
    return image.pixel_scale or default


def _warn_unmeasured(unmeasured, origin):
    by_reason = {}
    for band, reason in unmeasured.items():
        by_reason.setdefault(reason, []).append(band)
    reasons = "; ".join(f"{', '.join(bands)}: {reason}" for reason, bands in by_reason.items())
    fallback = [band for band in unmeasured if origin.get(band) == "reference"]
    consequence = (
        f"the model's reference PSF is assumed for {fallback} and the range is not checked there"
        if fallback
        else "the range is not checked there"
    )
    warnings.warn(
        f"the PSF of band(s) {list(unmeasured)} could not be measured from the table's sources ({reasons}); "
        f"{consequence}. Give the PSF with psf={{band: ...}} (a PSFEx file, an array or a GalSim profile)",
        StarGalaxyWarning,
        stacklevel=4,
    )


def _outside_range(band_images, pixels, models, origin, validity, pixel_scale):
    """Band -> (rows whose PSF node lies outside the model's range, a description), for measured or given PSFs."""
    fwhm_range = validity.get("psf_fwhm", {})
    ellipticity_max = validity.get("psf_ellipticity_max", {})
    outside = {}
    for band, model in models.items():
        if origin[band] == "reference" or (band not in fwhm_range and band not in ellipticity_max):
            continue
        scale = _pixel_scale(band_images[band], pixel_scale)
        fwhm = model.fwhm * scale
        low, high = fwhm_range.get(band, (0.0, np.inf))
        limit = ellipticity_max.get(band, np.inf)
        bad_node = (fwhm < low) | (fwhm > high) | ~(np.nan_to_num(model.ellipticity, nan=np.inf) <= limit)
        if not bad_node.any():
            continue
        x, y = pixels[band]
        rows = np.flatnonzero(_on_image(x, y, band_images[band].shape) & bad_node[model.node_of(x, y)])
        if len(rows):
            outside[band] = (
                rows,
                f'{band}: FWHM {fwhm.min():.3f}-{fwhm.max():.3f}" and ellipticity up to '
                f'{np.nanmax(model.ellipticity):.3f} against {low:.3f}-{high:.3f}" and {limit:.3f}',
            )
    return outside
