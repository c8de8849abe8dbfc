"""Per-field conditions: nominal, or drawn at random for training (``variation=True``)."""

from dataclasses import dataclass, field, replace

import numpy as np

from ..instrument import (
    CSST_BANDS,
    band_order,
)

_NOMINAL_DISK_SED_WEIGHTS = (0.15, 0.35, 0.30, 0.20)

_NOMINAL_JITTER_FWHM = 0.10  # arcsec; puts the star FWHM at 0.10-0.15" across bands

_MAX_STAR_EBV_MEAN = 0.15

_MAX_GALAXY_EBV = 0.05

_BLACK_BODY_STAR_FIELD_FRACTION = 0.25  # varied fields that keep the nominal black-body stars


@dataclass(frozen=True)
class FieldConditions:
    """Per-field instrument and population settings (the nominal field by default).

    Attributes
    ----------
    psf_model : {'airy_gaussian', 'moffat', 'obscured_airy'}
        Optical PSF model.
    jitter_fwhm : float
        FWHM (arcsec) of the Gaussian jitter convolved with the Airy pattern,
        or added in quadrature to the Moffat width.
    moffat_beta : float
        Moffat index (NaN unless ``psf_model`` is ``'moffat'``).
    obscuration : float
        Linear central obscuration of the Airy pupil.
    sky_scale : dict
        Band -> factor on the nominal sky level.
    disk_sed_weights : tuple of float
        Probabilities of the four CWW disk templates (E, Sbc, Scd, Im).
    single_sersic_fraction : float
        Fraction of galaxies drawn as one Sersic profile instead of bulge+disk.
    star_sed_model : {'black_body', 'modified_black_body'}
        Stellar spectra.
    star_ebv_mean : float
        Mean of the stars' exponential E(B-V).
    galaxy_ebv : float
        Foreground E(B-V) of every galaxy.

    Examples
    --------
    >>> FieldConditions().psf_model, FieldConditions().nominal_seds
    ('airy_gaussian', True)
    """

    psf_model: str = "airy_gaussian"
    jitter_fwhm: float = _NOMINAL_JITTER_FWHM
    moffat_beta: float = float("nan")
    obscuration: float = 0.0
    sky_scale: dict = field(default_factory=lambda: dict.fromkeys(CSST_BANDS, 1.0))
    disk_sed_weights: tuple = _NOMINAL_DISK_SED_WEIGHTS
    single_sersic_fraction: float = 0.0
    star_sed_model: str = "black_body"
    star_ebv_mean: float = 0.0
    galaxy_ebv: float = 0.0

    @property
    def nominal_seds(self):
        """True when stars are unreddened black bodies and galaxies unreddened (as in nominal fields)."""
        return self.star_sed_model == "black_body" and self.star_ebv_mean == 0.0 and self.galaxy_ebv == 0.0


def draw_field_conditions(rng, variation):
    """The conditions of one field: nominal, or drawn at random when ``variation`` is true.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        The field's conditions stream.
    variation : bool
        Draw the PSF, sky, SED mix and galaxy profiles at random.

    Returns
    -------
    conditions : `FieldConditions`

    Examples
    --------
    >>> draw_field_conditions(np.random.default_rng(1), False) == FieldConditions()
    True
    """
    if not variation:
        return FieldConditions()
    psf_model = str(rng.choice(["airy_gaussian", "moffat", "obscured_airy"]))
    conditions = FieldConditions(
        psf_model=psf_model,
        jitter_fwhm=float(rng.uniform(0.085, 0.115)),
        moffat_beta=float(rng.uniform(2.5, 5.0)) if psf_model == "moffat" else float("nan"),
        obscuration=float(rng.uniform(0.2, 0.4)) if psf_model == "obscured_airy" else 0.0,
        sky_scale={name: float(rng.uniform(0.8, 1.2)) for name in band_order()},
        disk_sed_weights=tuple(float(w) for w in rng.dirichlet(np.full(4, 2.0))),
        single_sersic_fraction=float(rng.uniform(0.2, 0.8)),
        star_sed_model="modified_black_body",
        star_ebv_mean=float(rng.uniform(0.0, _MAX_STAR_EBV_MEAN)),
        galaxy_ebv=float(rng.uniform(0.0, _MAX_GALAXY_EBV)),
    )
    # Drawn last, so the other conditions of a field do not depend on it.
    if rng.uniform() < _BLACK_BODY_STAR_FIELD_FRACTION:
        conditions = replace(conditions, star_sed_model="black_body", star_ebv_mean=0.0)
    return conditions
