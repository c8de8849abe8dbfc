"""What makes a sky look like a real co-add: the realism options and how a field resolves them.

`Realism` groups four parts, each of which can be switched off with `None`:
`AberratedPSF` (the optics), `Coadd` (dithered exposures resampled to the
tile), `Defects` (what the pipeline leaves behind) and `Populations` (source
types beyond plain stars and bulge+disk galaxies). Every option left at
`None` takes its typical value, or, for a field simulated with
``variation=True``, a value drawn at random from its range; options given
explicitly are kept either way. The tables below list both. A field records
the resolved options (every value filled in) in its truth-table metadata and
headers.

Random draws are taken for every option of a part, in a fixed order, whether
or not the option was given, so pinning one option never moves the others;
each part draws from its own stream, so switching a part off or on does not
move the others either. New options are drawn after the existing ones.
"""

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import ClassVar

import numpy as np

__all__ = ["AberratedPSF", "Coadd", "Defects", "Populations", "Realism", "resolve_realism"]

#: Wavelength (nm) at which aberrations are given in waves: the r-band effective wavelength.
ABERRATION_REFERENCE_WAVELENGTH = 620.0

#: Noll indices of the Zernike terms in `AberratedPSF.aberrations`.
ZERNIKE_NOLL_INDICES = (4, 5, 6, 7, 8, 9, 10, 11)

ZERNIKE_NAMES = (
    "defocus",
    "astigmatism_45",
    "astigmatism_0",
    "coma_y",
    "coma_x",
    "trefoil_y",
    "trefoil_x",
    "spherical",
)

RESAMPLING_KERNELS = ("lanczos3", "bilinear")

# Typical centre aberrations (waves at 620 nm, Noll 4-11): about 0.05 waves rms
# in all, a diffraction-limited but not perfect space telescope (Strehl 0.9 at r).
_TYPICAL_ABERRATIONS = (0.02, 0.025, -0.015, 0.015, -0.01, 0.01, 0.005, 0.015)

_MAX_ABERRATION = 0.1  # waves at 620 nm per term, in random draws


def _check_range(name, value, low, high):
    if value is None:
        return
    if not np.isfinite(value) or not low <= value <= high:
        msg = f"{name} must be between {low} and {high}; got {value!r}"
        raise ValueError(msg)


def _check_choice(name, value, choices):
    if value is not None and value not in choices:
        msg = f"{name} must be one of {choices}; got {value!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class AberratedPSF:
    """An optical PSF with aberrations that drift over the tile, convolved with pointing jitter.

    A GalSim ``OpticalPSF`` (circular pupil with a central obscuration and
    struts, Zernike aberrations) at each band's effective wavelength, so the
    diffraction scale grows as lambda/D and the aberrations, a fixed wavefront
    error, shrink in waves as 1/lambda; convolved with an elliptical Gaussian
    jitter that is the same in every band. The aberrations vary over the tile
    as low-order polynomials in the field position. The PSF is tabulated on a
    ``nodes`` x ``nodes`` grid over the tile and each source takes the PSF of
    its cell.

    ========================  ==========================  ================================
    option                    typical                     ``variation=True`` draws
    ========================  ==========================  ================================
    ``r_fwhm``                0.15 arcsec                 uniform 0.08-0.25 arcsec
    ``aberrations``           0.05 waves rms in all       each term normal, sigma 0-0.025
    ``field_variation``       0.01 waves                  uniform 0-0.015 waves
    ``obscuration``           0.2                         0 (off-axis) 3 times in 10, else
                                                          uniform 0.1-0.35
    ``n_struts``              4                           0, 3, 4 or 6
    ``strut_thickness``       0.02                        uniform 0.015-0.04
    ``strut_angle``           0 deg                       uniform 0-90 deg
    ``jitter_ellipticity``    0.03                        uniform 0-0.08
    ``jitter_angle``          0 deg                       uniform 0-180 deg
    ========================  ==========================  ================================

    With these draws the r-band PSF ellipticity (``1 - b/a`` of the adaptive
    moments, over all nodes of 12 fields) has a median of 0.027, a 90th
    percentile of 0.066 and a 99th of 0.11.

    Attributes
    ----------
    r_fwhm : float or None
        FWHM (arcsec) of the r-band PSF at the tile centre, before the pixel
        response and the co-add resampling (optics convolved with jitter;
        the ``PSFFWHM`` header keyword). The jitter width is solved for;
        the other bands follow from the optics. FWHM here is the diameter of
        the circle with the area above half maximum, which copes with
        elliptical and lopsided PSFs; a Gaussian fit to stars reads 2-10
        percent more (see `astro_stargal.simulate._psf`), and co-adds are
        broader still (``PSFFWHMC``, ``PSFGFWHM``).
    aberrations : tuple of 8 float or None
        Zernike coefficients at the tile centre in waves at 620 nm (Noll 4 to
        11: defocus, two astigmatisms, two comas, two trefoils, spherical).
    field_variation : float or None
        RMS over the tile (waves at 620 nm) of each coefficient's departure
        from its centre value.
    obscuration : float or None
        Linear central obscuration of the pupil (0 for an off-axis telescope
        such as CSST).
    n_struts : int or None
        Number of struts holding the secondary (diffraction spikes: two per
        strut, or one per strut pair for even numbers).
    strut_thickness : float or None
        Strut thickness as a fraction of the pupil diameter.
    strut_angle : float or None
        Angle of the first strut from the +y axis towards +x (degrees).
    jitter_ellipticity : float or None
        ``1 - b/a`` of the Gaussian jitter.
    jitter_angle : float or None
        Position angle of the jitter's major axis from +x towards +y (degrees).
    nodes : int
        PSF grid nodes per side of the tile.

    Examples
    --------
    >>> AberratedPSF(r_fwhm=0.2).r_fwhm
    0.2
    """

    r_fwhm: float | None = None
    aberrations: tuple | None = None
    field_variation: float | None = None
    obscuration: float | None = None
    n_struts: int | None = None
    strut_thickness: float | None = None
    strut_angle: float | None = None
    jitter_ellipticity: float | None = None
    jitter_angle: float | None = None
    nodes: int = 4

    def __post_init__(self):
        _check_range("r_fwhm", self.r_fwhm, 0.03, 1.0)
        if self.aberrations is not None:
            values = tuple(float(value) for value in self.aberrations)
            if len(values) != len(ZERNIKE_NOLL_INDICES) or not all(abs(v) <= 1.0 for v in values):
                msg = f"aberrations must be 8 coefficients (Noll 4-11) of at most 1 wave each; got {self.aberrations!r}"
                raise ValueError(msg)
            object.__setattr__(self, "aberrations", values)
        _check_range("field_variation", self.field_variation, 0.0, 0.5)
        _check_range("obscuration", self.obscuration, 0.0, 0.8)
        if self.n_struts is not None and (
            int(self.n_struts) != self.n_struts or not 0 <= self.n_struts <= 12
        ):
            msg = f"n_struts must be an integer from 0 to 12; got {self.n_struts!r}"
            raise ValueError(msg)
        _check_range("strut_thickness", self.strut_thickness, 0.0, 0.2)
        _check_range("strut_angle", self.strut_angle, -360.0, 360.0)
        _check_range("jitter_ellipticity", self.jitter_ellipticity, 0.0, 0.5)
        _check_range("jitter_angle", self.jitter_angle, -360.0, 360.0)
        if int(self.nodes) != self.nodes or not 1 <= self.nodes <= 32:
            msg = f"nodes must be an integer from 1 to 32; got {self.nodes!r}"
            raise ValueError(msg)

    _typical: ClassVar[dict] = {
        "r_fwhm": 0.15,
        "aberrations": _TYPICAL_ABERRATIONS,
        "field_variation": 0.01,
        "obscuration": 0.2,
        "n_struts": 4,
        "strut_thickness": 0.02,
        "strut_angle": 0.0,
        "jitter_ellipticity": 0.03,
        "jitter_angle": 0.0,
    }

    @staticmethod
    def _draw(rng):
        scatter = rng.uniform(0.0, 0.025)
        aberrations = np.clip(rng.normal(0.0, scatter, size=8), -_MAX_ABERRATION, _MAX_ABERRATION)
        off_axis = rng.uniform() < 0.3
        obscuration = rng.uniform(0.1, 0.35)
        return {
            "r_fwhm": rng.uniform(0.08, 0.25),
            "aberrations": tuple(float(value) for value in aberrations),
            "field_variation": rng.uniform(0.0, 0.015),
            "obscuration": 0.0 if off_axis else obscuration,
            "n_struts": int(rng.choice([0, 3, 4, 6])),
            "strut_thickness": rng.uniform(0.015, 0.04),
            "strut_angle": rng.uniform(0.0, 90.0),
            "jitter_ellipticity": rng.uniform(0.0, 0.08),
            "jitter_angle": rng.uniform(0.0, 180.0),
        }


@dataclass(frozen=True)
class Coadd:
    """Each band a co-add of dithered exposures, resampled to the tile grid.

    Every exposure (150 s) is dithered by a few pixels plus a sub-pixel
    offset, carries its own noise and masks (a chip gap may cross the tile),
    and is resampled to the tile grid with a Lanczos3 or bilinear kernel; the
    exposures are averaged with inverse-variance weights. The noise of the
    co-add is therefore correlated between neighbouring pixels and its PSF
    broader than one exposure's; areas under a gap have fewer exposures. A
    weight map (inverse variance) and an exposure-count map are written beside
    each image.

    ========================  ==========================  ================================
    option                    typical                     ``variation=True`` draws
    ========================  ==========================  ================================
    ``resampling``            ``'lanczos3'``              either kernel
    ``dither``                8 pixels                    uniform 1-20 pixels
    ``gap_probability``       0.3                         uniform 0-0.6
    ``gap_width``             80 pixels                   uniform 20-200 pixels
    ========================  ==========================  ================================

    Attributes
    ----------
    n_exposures : int or None
        Exposures per band; `None` for the CSST wide survey (2, or 4 in NUV
        and y), also with ``variation=True``.
    resampling : {'lanczos3', 'bilinear'} or None
        Interpolation kernel of the resampling.
    dither : float or None
        Largest dither offset in pixels along each axis (uniform within
        plus or minus this).
    gap_probability : float or None
        Chance that a chip gap crosses the tile in one exposure.
    gap_width : float or None
        Width of a chip gap in pixels.

    Examples
    --------
    >>> Coadd(resampling="bilinear").resampling
    'bilinear'
    """

    n_exposures: int | None = None
    resampling: str | None = None
    dither: float | None = None
    gap_probability: float | None = None
    gap_width: float | None = None

    def __post_init__(self):
        if self.n_exposures is not None and (
            int(self.n_exposures) != self.n_exposures or not 1 <= self.n_exposures <= 64
        ):
            msg = f"n_exposures must be an integer from 1 to 64; got {self.n_exposures!r}"
            raise ValueError(msg)
        _check_choice("resampling", self.resampling, RESAMPLING_KERNELS)
        _check_range("dither", self.dither, 0.0, 100.0)
        _check_range("gap_probability", self.gap_probability, 0.0, 1.0)
        _check_range("gap_width", self.gap_width, 1.0, 2000.0)

    _typical: ClassVar[dict] = {
        "resampling": "lanczos3",
        "dither": 8.0,
        "gap_probability": 0.3,
        "gap_width": 80.0,
    }

    @staticmethod
    def _draw(rng):
        return {
            "resampling": str(rng.choice(RESAMPLING_KERNELS)),
            "dither": rng.uniform(1.0, 20.0),
            "gap_probability": rng.uniform(0.0, 0.6),
            "gap_width": rng.uniform(20.0, 200.0),
        }


@dataclass(frozen=True)
class Defects:
    """What a reduction pipeline leaves behind in a co-add.

    Cosmic rays hit every exposure; where two or more exposures cover a pixel
    the co-add rejects them (the exposure gets zero weight there) except for a
    surviving fraction, and where only one covers they all survive. Warm
    pixels missing from the bad-pixel mask sit at fixed detector positions, so
    each exposure puts them at its own dither offset. Charge above the full
    well bleeds along detector columns (the image y axis). A smooth
    sky-subtraction residual covers the whole tile.

    ========================  ==========================  ================================
    option                    typical                     ``variation=True`` draws
    ========================  ==========================  ================================
    ``cosmic_ray_rate``       150 per arcmin^2            uniform 50-300
    ``cosmic_ray_survival``   0.02                        uniform 0-0.05
    ``hot_pixel_fraction``    2e-4                        log-uniform 2e-5 to 1e-3
    ``sky_residual``          0.1                         uniform 0-0.3
    ========================  ==========================  ================================

    Attributes
    ----------
    cosmic_ray_rate : float or None
        Cosmic rays per square arcminute per 150 s exposure (150 is about 1.5
        per cm^2 per s, the rate in low Earth orbit, on 10 micron pixels).
    cosmic_ray_survival : float or None
        Fraction of cosmic rays that survive rejection where two or more
        exposures cover.
    hot_pixel_fraction : float or None
        Fraction of detector pixels with an unmasked dark-current excess
        (0.05-2 electron/s, log-uniform).
    bleed_trails : bool
        Spill charge above the full well along columns.
    sky_residual : float or None
        RMS of the smooth sky-subtraction residual in units of the co-add's
        pixel noise (scales of 10-40 arcsec).

    Examples
    --------
    >>> Defects(cosmic_ray_rate=0.0).cosmic_ray_rate
    0.0
    """

    cosmic_ray_rate: float | None = None
    cosmic_ray_survival: float | None = None
    hot_pixel_fraction: float | None = None
    bleed_trails: bool = True
    sky_residual: float | None = None

    def __post_init__(self):
        _check_range("cosmic_ray_rate", self.cosmic_ray_rate, 0.0, 1e4)
        _check_range("cosmic_ray_survival", self.cosmic_ray_survival, 0.0, 1.0)
        _check_range("hot_pixel_fraction", self.hot_pixel_fraction, 0.0, 0.01)
        _check_range("sky_residual", self.sky_residual, 0.0, 10.0)
        if not isinstance(self.bleed_trails, bool | np.bool_):
            msg = f"bleed_trails must be True or False; got {self.bleed_trails!r}"
            raise ValueError(msg)

    _typical: ClassVar[dict] = {
        "cosmic_ray_rate": 150.0,
        "cosmic_ray_survival": 0.02,
        "hot_pixel_fraction": 2e-4,
        "sky_residual": 0.1,
    }

    @staticmethod
    def _draw(rng):
        return {
            "cosmic_ray_rate": rng.uniform(50.0, 300.0),
            "cosmic_ray_survival": rng.uniform(0.0, 0.05),
            "hot_pixel_fraction": math.exp(rng.uniform(math.log(2e-5), math.log(1e-3))),
            "sky_residual": rng.uniform(0.0, 0.3),
        }


@dataclass(frozen=True)
class Populations:
    """Source types beyond black-body stars and bulge+disk galaxies.

    Stars cooler than 3900 K become M dwarfs with TiO and VO bands; the
    fractions below are of the stars (white dwarfs, binaries) or of the
    galaxies (Sersic profiles, clumps, mergers). See the `astro_stargal.simulate`
    docstring for the truth-table columns that describe them and for how QSOs
    are scored.

    ==============================  ==========================  ==========================
    option                          typical                     ``variation=True`` draws
    ==============================  ==========================  ==========================
    ``sersic_fraction``             0.5                         uniform 0.2-0.8
    ``clumpy_fraction``             0.3                         uniform 0.1-0.6
    ``merger_fraction``             0.05                        uniform 0.02-0.1
    ``white_dwarf_fraction``        0.03                        uniform 0.01-0.06
    ``unresolved_binary_fraction``  0.15                        uniform 0.05-0.3
    ``resolved_binary_fraction``    0.05                        uniform 0.02-0.1
    ``qso_density``                 2 per arcmin^2              uniform 0.5-5
    ``bright_star_density``         0.3 per arcmin^2            uniform 0-1
    ==============================  ==========================  ==========================

    Attributes
    ----------
    sersic_fraction : float or None
        Galaxies drawn as one Sersic profile (n = 0.5-6) instead of bulge+disk.
    clumpy_fraction : float or None
        Star-forming galaxies (Sbc, Scd and Im spectra) with 1-6 star-forming
        clumps that carry a young spectrum (Im, tilted bluer), so they are
        stronger in blue bands.
    merger_fraction : float or None
        Galaxies with a companion galaxy 0.2-1 arcsec away at the same redshift.
    white_dwarf_fraction : float or None
        Stars that are white dwarfs (6000-40000 K, weak Balmer jump).
    unresolved_binary_fraction : float or None
        Stars with an unresolved cooler companion (one row, combined spectrum).
    resolved_binary_fraction : float or None
        Stars with a companion 0.05-0.3 arcsec away (one row each).
    qso_density : float or None
        QSOs per square arcminute (point sources, r = 17-27.5, z = 0.3-4).
    bright_star_density : float or None
        Extra stars per square arcminute with r = 13-17, which saturate.

    Examples
    --------
    >>> Populations(qso_density=0.0).qso_density
    0.0
    """

    sersic_fraction: float | None = None
    clumpy_fraction: float | None = None
    merger_fraction: float | None = None
    white_dwarf_fraction: float | None = None
    unresolved_binary_fraction: float | None = None
    resolved_binary_fraction: float | None = None
    qso_density: float | None = None
    bright_star_density: float | None = None

    def __post_init__(self):
        for name in (
            "sersic_fraction",
            "clumpy_fraction",
            "merger_fraction",
            "white_dwarf_fraction",
            "unresolved_binary_fraction",
            "resolved_binary_fraction",
        ):
            _check_range(name, getattr(self, name), 0.0, 1.0)
        _check_range("qso_density", self.qso_density, 0.0, 1e4)
        _check_range("bright_star_density", self.bright_star_density, 0.0, 1e3)

    _typical: ClassVar[dict] = {
        "sersic_fraction": 0.5,
        "clumpy_fraction": 0.3,
        "merger_fraction": 0.05,
        "white_dwarf_fraction": 0.03,
        "unresolved_binary_fraction": 0.15,
        "resolved_binary_fraction": 0.05,
        "qso_density": 2.0,
        "bright_star_density": 0.3,
    }

    @staticmethod
    def _draw(rng):
        return {
            "sersic_fraction": rng.uniform(0.2, 0.8),
            "clumpy_fraction": rng.uniform(0.1, 0.6),
            "merger_fraction": rng.uniform(0.02, 0.1),
            "white_dwarf_fraction": rng.uniform(0.01, 0.06),
            "unresolved_binary_fraction": rng.uniform(0.05, 0.3),
            "resolved_binary_fraction": rng.uniform(0.02, 0.1),
            "qso_density": rng.uniform(0.5, 5.0),
            "bright_star_density": rng.uniform(0.0, 1.0),
        }


_PARTS = {"psf": AberratedPSF, "coadd": Coadd, "defects": Defects, "populations": Populations}


@dataclass(frozen=True)
class Realism:
    """Skies that look like real co-adds: optics, co-adding, defects and populations.

    Pass one to `simulate_field`, `write_field` or `simulate_tiles` as
    ``realism=``; `None` there (the default) gives the nominal field. Each
    part can be given with explicit options or switched off with `None`.

    Attributes
    ----------
    psf : `AberratedPSF` or None
        Aberrated optical PSF varying over the tile; `None` keeps the nominal
        (or, with ``variation=True``, the randomised) PSF of `FieldConditions`.
    coadd : `Coadd` or None
        Dithered, resampled exposures; `None` keeps the single-image noise.
    defects : `Defects` or None
        Cosmic rays, warm pixels, bleed trails, sky residuals; `None` for none.
    populations : `Populations` or None
        White dwarfs, M dwarfs, binaries, QSOs, Sersic, clumpy and merging
        galaxies, bright stars; `None` for the nominal populations.

    Examples
    --------
    >>> Realism(psf=AberratedPSF(r_fwhm=0.12), defects=None).defects is None
    True
    """

    psf: AberratedPSF | None = field(default_factory=AberratedPSF)
    coadd: Coadd | None = field(default_factory=Coadd)
    defects: Defects | None = field(default_factory=Defects)
    populations: Populations | None = field(default_factory=Populations)

    def __post_init__(self):
        for name, kind in _PARTS.items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                msg = f"Realism.{name} must be a {kind.__name__} or None; got {value!r}"
                raise TypeError(msg)


def _resolve_part(options, rng, variation):
    drawn = options._draw(rng)  # every option drawn, so pinning one does not move the others
    values = {}
    for option in fields(options):
        if getattr(options, option.name) is None and option.name in options._typical:
            values[option.name] = drawn[option.name] if variation else options._typical[option.name]
    return replace(options, **values)


def resolve_realism(realism, seed_sequence, variation):
    """Fill in every option a field's realism left at `None`.

    Parameters
    ----------
    realism : `Realism`
        The options asked for.
    seed_sequence : `numpy.random.SeedSequence`
        The field's realism stream; each part draws from its own child.
    variation : bool
        Draw unset options at random instead of taking their typical values.

    Returns
    -------
    resolved : `Realism`
        The same parts, with every option set.

    Examples
    --------
    >>> resolved = resolve_realism(Realism(), np.random.SeedSequence(1), variation=False)
    >>> resolved.psf.r_fwhm, resolved.coadd.resampling
    (0.15, 'lanczos3')
    """
    children = dict(zip(_PARTS, seed_sequence.spawn(len(_PARTS)), strict=True))
    values = {}
    for name in _PARTS:
        options = getattr(realism, name)
        if options is not None:
            values[name] = _resolve_part(options, np.random.default_rng(children[name]), variation)
    return replace(realism, **values)


def realism_metadata(realism):
    """The resolved options as plain Python values (for the truth-table metadata)."""

    def plain(value):
        if isinstance(value, tuple | list):
            return [plain(item) for item in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    parts = {}
    for name in _PARTS:
        options = getattr(realism, name)
        parts[name] = (
            None if options is None else {key: plain(value) for key, value in asdict(options).items()}
        )
    return parts
