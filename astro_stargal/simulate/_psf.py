"""The PSF of each band: an optical model convolved with the pixel, tabulated once per field.

Nominal fields use one `BandPSF` per band (Airy+Gaussian, Moffat or obscured
Airy). Realistic fields (``Realism.psf``) use a `PSFGrid`:

* Optics: GalSim ``OpticalPSF`` on a pupil sampled with 192 points across
  (struts of 1.5 percent of the diameter are resolved) at Nyquist sampling,
  Zernike terms 4-11 from `AberrationField`, drawn without pixel 8 times
  finer than the pixel over 4.7 arcsec. Jitter, pixel and co-add resampling
  kernel are products in Fourier space; every other fine sample gives the
  4 times oversampled tabulation a ``galsim.InterpolatedImage`` draws from.
  About 50 ms per node on one core; 16 nodes x 7 bands take 6 s a tile.
* FWHM: the diameter of the circle with the area above half maximum
  (`area_fwhm`), the same for round, elliptical or lopsided PSFs. The jitter
  is solved so that the r-band FWHM of optics x jitter at the tile centre is
  ``r_fwhm`` (``PSFFWHM``); drawn values always leave a jitter of at least
  0.045 arcsec (120 fields at r_fwhm = 0.08 with random aberrations).
  A circular Gaussian-PRF fit (`photutils.psf.fit_fwhm`, 7 x 7 pixels)
  reads such undersampled Airy-like cores wider: on bright stars of single
  images it finds 1.095, 1.068, 1.043, 1.029, 1.022 times ``r_fwhm`` =
  0.08, 0.12, 0.16, 0.20, 0.25 arcsec; ``PSFGFWHM`` records what it finds on
  the noiseless centre PSF and stars match it within 0.5 percent (4 percent
  at 0.08 arcsec, where the pixel phase matters).
* Variation over the tile: a source takes the PSF of the nearest node (the
  node of its cell), so the image follows the ``.psf.fits`` grid exactly but
  the PSF is constant within a cell. Against the optics at each position
  (7 x 7 positions, 4 x 4 nodes, 1024 pixel tiles, typical aberrations with
  ``field_variation`` 0.01 wave) the nearest node is off by 0.6-1.6 percent
  RMS in FWHM (at most 2-6 percent, at the tile corners) and 0.010-0.016
  RMS in ellipticity (at most 0.06); at the largest drawn variation (0.015)
  1.2-3.3 percent and 0.017-0.028. Interpolating between nodes would need an
  ``InterpolatedImage`` per galaxy, about 13 ms each: 7 minutes a tile.
* Wavelength: the diffraction scale grows as lambda/D and the aberrations,
  a fixed wavefront error, shrink as 1/lambda in waves; the jitter is the
  same in every band.
"""

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from scipy import ndimage

from ..instrument import (
    APERTURE_DIAMETER,
    CSST_BANDS,
    PIXEL_SCALE,
    ab_zeropoint,
)
from ._coadd import resampling_transfer
from ._depth import DEPTH_APERTURE_RADIUS
from ._galsim import ARCSEC_PER_RADIAN
from ._realism import ABERRATION_REFERENCE_WAVELENGTH

_PSF_OVERSAMPLING = 4

_PSF_IMAGE_SIZE = 256  # oversampled pixels, i.e. 4.7 arcsec on a side


def optical_psf(galsim, band, conditions, gsparams):
    """Return the GalSim PSF (without the pixel) of a band in arcsec units."""
    lam_over_diam = CSST_BANDS[band].effective_wavelength * 1e-9 / APERTURE_DIAMETER * ARCSEC_PER_RADIAN
    if conditions.psf_model == "moffat":
        fwhm = math.hypot(1.029 * lam_over_diam, conditions.jitter_fwhm)
        return galsim.Moffat(beta=conditions.moffat_beta, fwhm=fwhm, gsparams=gsparams)
    airy = galsim.Airy(lam_over_diam=lam_over_diam, obscuration=conditions.obscuration, gsparams=gsparams)
    jitter = galsim.Gaussian(fwhm=conditions.jitter_fwhm, gsparams=gsparams)
    return galsim.Convolve(airy, jitter, gsparams=gsparams)


@dataclass
class BandPSF:
    """The pixel-convolved PSF of one band, tabulated once per field.

    Attributes
    ----------
    effective : ``galsim.InterpolatedImage``
        PSF convolved with the pixel, oversampled 4 times.
    fwhm : float
        FWHM of the optical PSF (arcsec).
    aperture_fraction : float
        Point-source flux fraction inside the depth aperture
        (`DEPTH_APERTURE_RADIUS`), averaged over sub-pixel positions.

    Examples
    --------
    >>> from astro_stargal.simulate import FieldConditions, import_galsim, make_gsparams
    >>> galsim = import_galsim()
    >>> psf = build_band_psf(galsim, "r", FieldConditions(), make_gsparams(galsim))
    >>> 0.1 < psf.fwhm < 0.16
    True
    """

    effective: object  # galsim.InterpolatedImage, PSF x pixel
    fwhm: float  # arcsec, of the optical PSF
    aperture_fraction: float  # point-source flux inside DEPTH_APERTURE_RADIUS

    #: Arcsec added to a galaxy's extent for its drawing stamp.
    galaxy_stamp_margin = 0.3

    def at(self, x, y):
        """The PSF at ``(x, y)``: the same everywhere."""
        return self.effective

    def point_source(self, x, y, flux, mag):
        """A point source of ``flux`` and the half-size (pixels) of its drawing stamp."""
        return self.effective.withFlux(flux), star_stamp_half_size(mag)


def star_stamp_half_size(mag):
    """Half-size in pixels of the stamp a star of magnitude ``mag`` is drawn in."""
    if mag < 19.0:
        return 32
    if mag < 23.0:
        return 16
    return 8


def build_band_psf(galsim, band, conditions, gsparams):
    """Tabulate a band's PSF for a field (the optical PSF convolved with the pixel).

    Parameters
    ----------
    galsim : module
        GalSim, from `import_galsim`.
    band : str
        CSST band name.
    conditions : `FieldConditions`
        The field's PSF model.
    gsparams : ``galsim.GSParams``
        From `make_gsparams`.

    Returns
    -------
    psf : `BandPSF`

    Examples
    --------
    >>> from astro_stargal.simulate import FieldConditions, import_galsim, make_gsparams
    >>> galsim = import_galsim()
    >>> build_band_psf(galsim, "g", FieldConditions(), make_gsparams(galsim)).aperture_fraction < 1
    True
    """
    from photutils.aperture import CircularAperture

    optical = optical_psf(galsim, band, conditions, gsparams)
    with_pixel = galsim.Convolve(optical, galsim.Pixel(PIXEL_SCALE), gsparams=gsparams)
    tabulated = with_pixel.drawImage(
        nx=_PSF_IMAGE_SIZE,
        ny=_PSF_IMAGE_SIZE,
        scale=PIXEL_SCALE / _PSF_OVERSAMPLING,
        method="no_pixel",
    )
    effective = galsim.InterpolatedImage(tabulated, gsparams=gsparams)
    # Average over sub-pixel phases: sources fall anywhere within a pixel.
    fractions = []
    for offset in ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5), (0.25, 0.25)):
        stamp = effective.drawImage(nx=25, ny=25, scale=PIXEL_SCALE, method="no_pixel", offset=offset)
        aperture = CircularAperture((12 + offset[0], 12 + offset[1]), DEPTH_APERTURE_RADIUS)
        fractions.append(aperture.do_photometry(stamp.array, method="exact")[0][0])
    fwhm = optical.calculateFWHM(size=256, scale=0.004)
    return BandPSF(effective, float(fwhm), float(np.mean(fractions)))


# --- Aberrated optical PSF that varies over the tile (``Realism.psf``) ------------------------------

_NODE_OVERSAMPLING = 8  # the optics are drawn 8 times finer than the pixel, then sampled at 4

_PUPIL_SAMPLES = 192  # across the pupil diameter: struts 1.5 percent of it thick are 2.9 samples wide

_FWHM_UPSAMPLING = 4  # the half-maximum area is counted on a 4 times finer spline of the image

_FIELD_BASIS = 5  # u, v, u^2 - 1/3, uv, v^2 - 1/3: zero mean and orthogonal over the tile

_FIELD_BASIS_MEAN_SQUARE = np.array([1 / 3, 1 / 3, 4 / 45, 1 / 9, 4 / 45])


def _field_basis(u, v):
    u, v = np.asarray(u, float), np.asarray(v, float)
    return np.stack([u, v, u**2 - 1 / 3, u * v, v**2 - 1 / 3], axis=-1)


@dataclass(frozen=True)
class AberrationField:
    """Zernike coefficients over a tile: centre values plus a quadratic polynomial in position.

    Attributes
    ----------
    centre : `~numpy.ndarray`
        Coefficients at the tile centre (waves at 620 nm, Noll 4-11).
    polynomial : `~numpy.ndarray`
        ``(8, 5)`` coefficients of ``u, v, u^2 - 1/3, uv, v^2 - 1/3`` for each
        term, with ``u`` and ``v`` running from -1 to 1 across the tile.
    shape : tuple of int
        Tile shape ``(ny, nx)``.

    Examples
    --------
    >>> field = AberrationField(np.zeros(8), np.zeros((8, 5)), (64, 64))
    >>> field.at(10.0, 20.0).shape
    (8,)
    """

    centre: np.ndarray
    polynomial: np.ndarray
    shape: tuple

    def at(self, x, y):
        """Coefficients (waves at 620 nm) at astropy pixel position ``(x, y)``."""
        u = (np.asarray(x, float) - (self.shape[1] - 1) / 2) / (self.shape[1] / 2)
        v = (np.asarray(y, float) - (self.shape[0] - 1) / 2) / (self.shape[0] / 2)
        return self.centre + _field_basis(u, v) @ self.polynomial.T


def draw_aberration_field(rng, options, shape):
    """A random quadratic pattern whose RMS over the tile is ``options.field_variation`` per term.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        The field's PSF stream.
    options : `AberratedPSF`
        Resolved options (``aberrations`` and ``field_variation``).
    shape : tuple of int
        Tile shape ``(ny, nx)``.

    Returns
    -------
    field : `AberrationField`

    Examples
    --------
    >>> from astro_stargal.simulate import AberratedPSF
    >>> options = AberratedPSF(aberrations=(0.0,) * 8, field_variation=0.03)
    >>> field = draw_aberration_field(np.random.default_rng(1), options, (100, 100))
    >>> np.allclose(np.sqrt(field.polynomial**2 @ _FIELD_BASIS_MEAN_SQUARE), 0.03)
    True
    """
    polynomial = rng.normal(size=(len(options.aberrations), _FIELD_BASIS))
    rms = np.sqrt(polynomial**2 @ _FIELD_BASIS_MEAN_SQUARE)
    polynomial *= (options.field_variation / rms)[:, None]
    return AberrationField(np.array(options.aberrations, float), polynomial, tuple(shape))


def node_positions(shape, nodes):
    """Astropy pixel positions ``(x, y)`` of the centres of an ``nodes`` x ``nodes`` grid of cells."""
    x = (np.arange(nodes) + 0.5) * shape[1] / nodes - 0.5
    y = (np.arange(nodes) + 0.5) * shape[0] / nodes - 0.5
    node_x, node_y = np.meshgrid(x, y)
    return node_x.ravel(), node_y.ravel()


def _frequencies(size, scale):
    """Cycles per arcsec of ``numpy.fft.rfft2`` of a ``size`` x ``size`` image: ``(fy, fx)``."""
    return np.fft.fftfreq(size, d=scale)[:, None], np.fft.rfftfreq(size, d=scale)[None, :]


def _jitter_transfer(fy, fx, fwhm, ellipticity, angle_deg):
    """Fourier transform of an elliptical Gaussian of geometric-mean FWHM ``fwhm`` (area kept)."""
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    axis_ratio = 1.0 - ellipticity
    major, minor = sigma**2 / axis_ratio, sigma**2 * axis_ratio
    angle = math.radians(angle_deg)
    along = fx * math.cos(angle) + fy * math.sin(angle)
    across = -fx * math.sin(angle) + fy * math.cos(angle)
    return np.exp(-2 * math.pi**2 * (major * along**2 + minor * across**2))


def area_fwhm(image, scale):
    """FWHM of a PSF image: the diameter of the circle whose area the pixels above half maximum cover.

    The region around the peak is interpolated 4 times finer (cubic spline)
    first; for a Gaussian of 8 to 27 samples FWHM this measures the FWHM with
    a bias below 0.1 percent and a scatter with the centre's sub-sample
    position below 0.15 percent. Unlike a radial profile, this copes with elliptical and
    lopsided PSFs, and it equals the FWHM of a round one.

    Parameters
    ----------
    image : 2D `~numpy.ndarray`
        The PSF, finely sampled (no pixel response).
    scale : float
        Sample spacing (arcsec).

    Returns
    -------
    fwhm : float
        In arcsec.

    Examples
    --------
    >>> y, x = np.mgrid[-64:64, -64:64]
    >>> round(area_fwhm(np.exp(-(x**2 + y**2) / (2 * 5.0**2)), 0.01), 3)  # sigma 5: FWHM 0.1177
    0.118
    """
    image = np.asarray(image, float)
    peak_y, peak_x = np.unravel_index(np.argmax(image), image.shape)
    # The spline only needs the region around the half-maximum contour (a rough count sizes it).
    rough_radius = math.sqrt(np.count_nonzero(image > 0.5 * image.max()) / math.pi)
    half_box = math.ceil(1.5 * rough_radius) + 4
    box = image[
        max(peak_y - half_box, 0) : peak_y + half_box + 1,
        max(peak_x - half_box, 0) : peak_x + half_box + 1,
    ]
    # grid_mode: samples keep their area, so the output spacing is exactly a quarter of the input.
    fine = ndimage.zoom(box, _FWHM_UPSAMPLING, order=3, grid_mode=True, mode="grid-constant")
    area = np.count_nonzero(fine > 0.5 * fine.max()) * (scale / _FWHM_UPSAMPLING) ** 2
    return 2.0 * math.sqrt(area / math.pi)


def _optics(galsim, band, aberrations, aperture, gsparams):
    wavelength = CSST_BANDS[band].effective_wavelength
    coefficients = np.zeros(12)
    # A fixed wavefront error is fewer waves at longer wavelengths.
    coefficients[4:12] = np.asarray(aberrations) * ABERRATION_REFERENCE_WAVELENGTH / wavelength
    return galsim.OpticalPSF(
        lam=wavelength, diam=APERTURE_DIAMETER, aberrations=coefficients, aper=aperture, gsparams=gsparams
    )


def make_aperture(galsim, band, options, gsparams, field_of_view=None):
    """The band's pupil: obscuration and struts, sampled finely enough to resolve the struts.

    ``field_of_view`` (arcsec) asks for a pupil sampled finely enough that
    the PSF pattern does not wrap around within it.
    """
    wavelength_m = CSST_BANDS[band].effective_wavelength * 1e-9
    scale = APERTURE_DIAMETER / _PUPIL_SAMPLES
    if field_of_view is not None:
        scale = min(scale, wavelength_m / (field_of_view / ARCSEC_PER_RADIAN))
    return galsim.Aperture(
        diam=APERTURE_DIAMETER,
        lam=CSST_BANDS[band].effective_wavelength,
        obscuration=options.obscuration,
        nstruts=int(options.n_struts),
        strut_thick=options.strut_thickness,
        strut_angle=options.strut_angle * galsim.degrees,
        pupil_plane_size=2 * APERTURE_DIAMETER,  # Nyquist sampling of the PSF
        pupil_plane_scale=scale,
        gsparams=gsparams,
    )


def _draw_fine(profile):
    """The profile (no pixel) on a 512 x 512 grid 8 times finer than the pixel, centred on a sample.

    GalSim draws an ``OpticalPSF`` alone by interpolating its tabulated pattern
    in real space, which is several times faster than drawing a convolution.
    """
    size = _PSF_IMAGE_SIZE * _NODE_OVERSAMPLING // _PSF_OVERSAMPLING
    # Centred on sample 255 (0-based), so every other sample is the 4x grid centred at 127.5.
    offset = (-0.5, -0.5)
    return profile.drawImage(
        nx=size, ny=size, scale=PIXEL_SCALE / _NODE_OVERSAMPLING, method="no_pixel", offset=offset
    ).array.astype(float)


def solve_jitter(galsim, options, field, gsparams):
    """The jitter FWHM that gives the r-band PSF at the tile centre the FWHM ``options.r_fwhm``.

    Parameters
    ----------
    galsim : module
        GalSim.
    options : `AberratedPSF`
        Resolved options.
    field : `AberrationField`
        The tile's aberrations.
    gsparams : ``galsim.GSParams``
        From `make_gsparams`.

    Returns
    -------
    jitter_fwhm : float
        Geometric-mean FWHM (arcsec) of the elliptical Gaussian jitter.

    Raises
    ------
    ValueError
        If the optics alone are already broader than ``r_fwhm``.

    Examples
    --------
    >>> from astro_stargal.simulate import AberratedPSF, import_galsim, make_gsparams
    >>> from astro_stargal.simulate._realism import Realism, resolve_realism
    >>> galsim = import_galsim()
    >>> options = resolve_realism(Realism(), np.random.SeedSequence(1), False).psf
    >>> field = draw_aberration_field(np.random.default_rng(1), options, (64, 64))
    >>> 0.1 < solve_jitter(galsim, options, field, make_gsparams(galsim)) < 0.15
    True
    """
    from scipy.optimize import brentq

    centre = field.at((field.shape[1] - 1) / 2, (field.shape[0] - 1) / 2)
    aperture = make_aperture(galsim, "r", options, gsparams)
    fine = _draw_fine(_optics(galsim, "r", centre, aperture, gsparams))
    scale = PIXEL_SCALE / _NODE_OVERSAMPLING
    transform = np.fft.rfft2(fine)
    fy, fx = _frequencies(fine.shape[0], scale)

    def excess(jitter):
        jittered = transform * _jitter_transfer(
            fy, fx, jitter, options.jitter_ellipticity, options.jitter_angle
        )
        return area_fwhm(np.fft.irfft2(jittered, s=fine.shape), scale) - options.r_fwhm

    if excess(0.0) >= 0:
        msg = (
            f"r_fwhm={options.r_fwhm!r} arcsec is narrower than the optics alone allow "
            f"({excess(0.0) + options.r_fwhm:.4f} arcsec with these aberrations and pupil)"
        )
        raise ValueError(msg)
    return float(brentq(excess, 0.0, 2.0 * options.r_fwhm + 0.1, xtol=1e-5))


@dataclass
class PSFGrid:
    """The PSF of one band on a grid of nodes over the tile, as a source in each cell sees it.

    Each node's PSF is the optics at the node's field position convolved with
    the jitter, the pixel and (in co-adds) the continuous resampling kernel,
    tabulated 4 times oversampled over 4.7 arcsec. The tabulation keeps its
    true flux (about 0.993 in r, 0.98 in y with struts): light beyond
    2.35 arcsec is not put back into the core. Sources take the PSF of the
    nearest node (the one whose cell holds them).

    Attributes
    ----------
    band : str
        CSST band.
    shape : tuple of int
        Tile shape ``(ny, nx)``.
    nodes : int
        Nodes per side.
    node_x, node_y : `~numpy.ndarray`
        Astropy pixel positions of the nodes (row by row).
    images : `~numpy.ndarray`
        ``(nodes**2, 256, 256)`` tabulated PSFs (flux per 4x sample); each
        sums to the flux inside it.
    effective : list
        ``galsim.InterpolatedImage`` of each node.
    fwhm : `~numpy.ndarray`
        FWHM (arcsec) of optics and jitter at each node (no pixel, no resampling).
    coadd_fwhm : `~numpy.ndarray`
        FWHM with the resampling kernel too (equal to ``fwhm`` without co-adds).
    ellipticity, position_angle : `~numpy.ndarray`
        ``1 - b/a`` and major-axis angle (deg, from +x towards +y) of the
        adaptive moments of each tabulated PSF.
    zernikes : `~numpy.ndarray`
        ``(nodes**2, 8)`` Zernike coefficients in waves at this band (Noll 4-11),
        or NaN for a PSF without aberrations.
    aperture_fraction : float
        Point-source flux fraction inside the depth aperture at the centre node.
    jitter_fwhm : float
        Jitter FWHM (arcsec), or NaN.
    gaussian_fwhm : float
        FWHM (arcsec) a circular Gaussian PRF fit (`photutils.psf.fit_fwhm`,
        7 x 7 pixels) gives for the noiseless centre PSF, averaged over four
        sub-pixel phases: what that estimator should find on bright stars.
    wide_optics : callable or None
        Makes the optics at the tile centre, for the wings of bright stars.
    transfer : tuple
        The jitter and the resampling kernel, as the tabulation applies them.

    Examples
    --------
    >>> from astro_stargal.simulate import FieldConditions, import_galsim, make_gsparams
    >>> galsim = import_galsim()
    >>> grid = uniform_psf_grid(galsim, "r", (64, 64), FieldConditions(), None, make_gsparams(galsim))
    >>> grid.at(3.0, 60.0) is grid.effective[0], len(grid.node_x)
    (True, 1)
    """

    band: str
    shape: tuple
    nodes: int
    node_x: np.ndarray
    node_y: np.ndarray
    images: np.ndarray
    effective: list
    fwhm: np.ndarray
    coadd_fwhm: np.ndarray
    ellipticity: np.ndarray
    position_angle: np.ndarray
    zernikes: np.ndarray
    aperture_fraction: float
    jitter_fwhm: float
    gaussian_fwhm: float = float("nan")
    wide_optics: object = None  # makes the optics at the tile centre for the wings of bright stars
    transfer: tuple = (None, None)  # (jitter, kernel) as `_tabulate` takes them
    _wide: dict = dataclasses.field(default_factory=dict, repr=False)

    def node_index(self, x, y):
        """Index of the node whose cell holds astropy pixel position ``(x, y)``."""
        column = min(max(int((x + 0.5) * self.nodes // self.shape[1]), 0), self.nodes - 1)
        row = min(max(int((y + 0.5) * self.nodes // self.shape[0]), 0), self.nodes - 1)
        return row * self.nodes + column

    def at(self, x, y):
        """The unit-flux pixel-convolved PSF (``galsim.InterpolatedImage``) at ``(x, y)``."""
        return self.effective[self.node_index(x, y)]

    @property
    def centre(self):
        """Index of the node nearest the tile centre."""
        return self.node_index((self.shape[1] - 1) / 2, (self.shape[0] - 1) / 2)

    @property
    def galaxy_stamp_margin(self):
        """Arcsec added to a galaxy's extent for its drawing stamp: 2.5 FWHM of the broadest node."""
        return max(0.3, 2.5 * float(np.max(self.coadd_fwhm)))

    def to_hdulist(self):
        """The grid as FITS: the tabulated PSFs (``PSF``) and the nodes (``NODES``).

        ``PSF`` is a ``(nodes**2, 256, 256)`` cube sampled 4 times finer than
        the pixel (flux per sample; node ``k``'s centre at sample 127.5, 127.5
        of plane ``k``). ``NODES`` gives each node's pixel position, FWHM
        without and with the resampling, ellipticity, angle and Zernikes.
        """
        from astropy import units as u
        from astropy.table import Table

        header = fits.Header()
        header["BAND"] = (self.band, "CSST band")
        header["OVERSAMP"] = (_PSF_OVERSAMPLING, "PSF samples per image pixel")
        header["PIXSCALE"] = (PIXEL_SCALE, "[arcsec] image pixel scale")
        header["NODES"] = (self.nodes, "nodes per side (a source uses its cell)")
        header["TILENX"], header["TILENY"] = self.shape[1], self.shape[0]
        header["CONTENT"] = ("optics x jitter x pixel (x resampling kernel)", "each plane")
        nodes = Table()
        nodes["x"] = self.node_x * u.pix
        nodes["y"] = self.node_y * u.pix
        nodes["fwhm"] = self.fwhm * u.arcsec
        nodes["coadd_fwhm"] = self.coadd_fwhm * u.arcsec
        nodes["ellipticity"] = self.ellipticity
        nodes["position_angle"] = self.position_angle * u.deg
        nodes["flux"] = self.images.sum(axis=(1, 2))
        for noll in range(4, 12):
            nodes[f"z{noll}"] = self.zernikes[:, noll - 4]
        return fits.HDUList(
            [
                fits.PrimaryHDU(header=header),
                fits.ImageHDU(self.images, header=header, name="PSF"),
                fits.table_to_hdu(nodes, name="NODES"),
            ]
        )

    def point_source(self, x, y, flux, mag):
        """A point source of ``flux`` at ``(x, y)`` and the half-size (pixels) of its drawing stamp.

        The tabulated PSF keeps its true flux, so for most stars the light
        beyond 2.35 arcsec is missing from the image, not added to the core.
        A star brighter than two magnitudes below saturation, whose wings and
        diffraction spikes show above the noise, is drawn out to
        ``32 sqrt(flux / flux at that magnitude)`` pixels (at most 128): its
        node's PSF inside 24 pixels, blended by 30 pixels into the wings of
        the tile centre's PSF tabulated over 19 arcsec (the far wings come
        from the pupil's diffraction and hardly change over a tile).
        """
        node = self.node_index(x, y)
        reference = 10 ** (-0.4 * (CSST_BANDS[self.band].saturation_mag + 2.0 - ab_zeropoint(self.band)))
        if flux <= reference or self.wide_optics is None:
            return self.effective[node].withScaledFlux(flux), star_stamp_half_size(mag)
        half_size = min(int(32 * math.sqrt(flux / reference)), _WIDE_HALF_SIZE)
        return self._bright_profile(node).withScaledFlux(flux), half_size

    def _bright_profile(self, node):
        """Node ``node``'s core inside `_CORE_TAPER`, the centre's wide tabulation outside (cached)."""
        import galsim

        if "wings" not in self._wide:
            wide = _tabulate_wide(galsim, self.wide_optics(), *self.transfer)
            self._wide["wings"] = wide * (1.0 - _core_taper(wide.shape[0]))
        if node not in self._wide:
            scale = PIXEL_SCALE / _PSF_OVERSAMPLING
            core = galsim.ImageD(self.images[node] * _core_taper(self.images.shape[1]), scale=scale)
            wings = galsim.ImageD(self._wide["wings"], scale=scale)
            self._wide[node] = galsim.Add(
                galsim.InterpolatedImage(core, pad_factor=2, calculate_maxk=False, calculate_stepk=False),
                galsim.InterpolatedImage(wings, pad_factor=2, calculate_maxk=False, calculate_stepk=False),
            )
        return self._wide[node]


@functools.lru_cache(maxsize=4)
def _kernel_transfer(kernel, size):
    """The resampling kernel's transfer on the fine grid's ``rfft2`` frequencies (kernel on the pixel grid)."""
    fy, fx = _frequencies(size, PIXEL_SCALE / _NODE_OVERSAMPLING)
    transfer = resampling_transfer(kernel, fy * PIXEL_SCALE) * resampling_transfer(kernel, fx * PIXEL_SCALE)
    transfer.flags.writeable = False
    return transfer


def _tabulate(galsim, fine, jitter, kernel, gsparams):
    """From the fine optics image: the 4x tabulation with jitter, pixel (and kernel), and both FWHMs.

    The convolutions are products in Fourier space on the fine grid, which
    samples even the NUV diffraction pattern above its Nyquist rate; light
    beyond the 4.7 arcsec box is cut, not folded back.
    """
    scale = PIXEL_SCALE / _NODE_OVERSAMPLING
    fy, fx = _frequencies(fine.shape[0], scale)
    transform = np.fft.rfft2(fine)
    if jitter is not None:
        transform = transform * _jitter_transfer(fy, fx, *jitter)
    fwhm = area_fwhm(np.fft.irfft2(transform, s=fine.shape), scale)
    if kernel is not None:
        transform = transform * _kernel_transfer(kernel, fine.shape[0])
        coadd_fwhm = area_fwhm(np.fft.irfft2(transform, s=fine.shape), scale)
    else:
        coadd_fwhm = fwhm
    with_pixel = transform * np.sinc(fy * PIXEL_SCALE) * np.sinc(fx * PIXEL_SCALE)
    step = _NODE_OVERSAMPLING // _PSF_OVERSAMPLING
    # Fine samples hold flux per fine sample; the 4x grid holds flux per 4x sample.
    tabulated = np.ascontiguousarray(np.fft.irfft2(with_pixel, s=fine.shape)[::step, ::step] * step**2)
    image = galsim.ImageD(tabulated, scale=PIXEL_SCALE / _PSF_OVERSAMPLING)
    effective = galsim.InterpolatedImage(image, pad_factor=2, gsparams=gsparams)
    moments = galsim.hsm.FindAdaptiveMom(image, strict=False)
    if moments.moments_status == 0:
        shape = moments.observed_shape
        ellipticity, angle = 1.0 - shape.q, shape.beta.deg % 180.0
    else:
        ellipticity, angle = float("nan"), float("nan")
    return tabulated, effective, fwhm, coadd_fwhm, ellipticity, angle


def _gaussian_prf_fwhm(effective):
    """FWHM (arcsec) that `photutils.psf.fit_fwhm` (7 x 7 pixels) finds for a noiseless PSF, over 4 phases."""
    from photutils.psf import fit_fwhm

    fits_ = []
    for offset in ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5)):
        stamp = effective.drawImage(nx=25, ny=25, scale=PIXEL_SCALE, method="no_pixel", offset=offset)
        fits_.append(fit_fwhm(stamp.array, xypos=[(12 + offset[0], 12 + offset[1])], fit_shape=7)[0])
    return float(np.mean(fits_)) * PIXEL_SCALE


def _aperture_fraction(effective):
    from photutils.aperture import CircularAperture

    # Average over sub-pixel phases: sources fall anywhere within a pixel.
    fractions = []
    for offset in ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5), (0.25, 0.25)):
        stamp = effective.drawImage(nx=25, ny=25, scale=PIXEL_SCALE, method="no_pixel", offset=offset)
        aperture = CircularAperture((12 + offset[0], 12 + offset[1]), DEPTH_APERTURE_RADIUS)
        fractions.append(aperture.do_photometry(stamp.array, method="exact")[0][0])
    return float(np.mean(fractions))


_WIDE_HALF_SIZE = 128  # pixels: bright stars' wings are tabulated over 19 arcsec

_CORE_TAPER = (24.0, 30.0)  # pixels: node core inside, centre wings outside, cosine blend between


def _core_taper(size):
    """Weight of the node's core on a ``size`` x ``size`` grid 4 times finer than the pixel."""
    offsets = (np.arange(size) - (size - 1) / 2) / _PSF_OVERSAMPLING
    radius = np.hypot(*np.meshgrid(offsets, offsets))
    inner, outer = _CORE_TAPER
    blend = np.clip((radius - inner) / (outer - inner), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * blend))


def _tabulate_wide(galsim, optics, jitter, kernel):
    """The PSF (jitter, kernel, pixel) tabulated 4 times oversampled over 2 x 128 pixels."""
    size = 2 * _WIDE_HALF_SIZE * _PSF_OVERSAMPLING
    scale = PIXEL_SCALE / _PSF_OVERSAMPLING
    image = optics.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array.astype(float)
    fy, fx = _frequencies(size, scale)
    transform = np.fft.rfft2(image)  # the transfer functions are real and even: no shift needed
    if jitter is not None:
        transform *= _jitter_transfer(fy, fx, *jitter)
    if kernel is not None:
        transform *= resampling_transfer(kernel, fy * PIXEL_SCALE) * resampling_transfer(
            kernel, fx * PIXEL_SCALE
        )
    transform *= np.sinc(fy * PIXEL_SCALE) * np.sinc(fx * PIXEL_SCALE)
    return np.fft.irfft2(transform, s=image.shape)


def _grid_from_profiles(
    galsim, band, shape, nodes, profiles, jitter, kernel, gsparams, zernikes, wide_optics
):
    node_x, node_y = node_positions(shape, nodes)
    columns = [_tabulate(galsim, _draw_fine(profile), jitter, kernel, gsparams) for profile in profiles]
    images, effective, fwhm, coadd_fwhm, ellipticity, angle = (
        list(column) for column in zip(*columns, strict=True)
    )
    grid = PSFGrid(
        band=band,
        shape=tuple(shape),
        nodes=nodes,
        node_x=node_x,
        node_y=node_y,
        images=np.array(images, dtype=np.float32),
        effective=effective,
        fwhm=np.array(fwhm),
        coadd_fwhm=np.array(coadd_fwhm),
        ellipticity=np.array(ellipticity),
        position_angle=np.array(angle),
        zernikes=zernikes,
        aperture_fraction=0.0,
        jitter_fwhm=float("nan") if jitter is None else jitter[0],
        wide_optics=wide_optics,
        transfer=(jitter, kernel),
    )
    grid.aperture_fraction = _aperture_fraction(grid.effective[grid.centre])
    grid.gaussian_fwhm = _gaussian_prf_fwhm(grid.effective[grid.centre])
    return grid


def aberrated_psf_grid(galsim, band, shape, options, field, jitter_fwhm, kernel, gsparams):
    """Tabulate a band's aberrated PSF at every node of the tile.

    Parameters
    ----------
    galsim : module
        GalSim.
    band : str
        CSST band.
    shape : tuple of int
        Tile shape ``(ny, nx)``.
    options : `AberratedPSF`
        Resolved options (pupil, jitter shape, nodes).
    field : `AberrationField`
        The tile's aberrations.
    jitter_fwhm : float
        From `solve_jitter`.
    kernel : {'lanczos3', 'bilinear'} or None
        Co-add resampling kernel, or `None` for a single image.
    gsparams : ``galsim.GSParams``
        From `make_gsparams`.

    Returns
    -------
    grid : `PSFGrid`

    Examples
    --------
    >>> from astro_stargal.simulate import import_galsim, make_gsparams
    >>> from astro_stargal.simulate._realism import AberratedPSF, Realism, resolve_realism
    >>> galsim = import_galsim()
    >>> realism = resolve_realism(Realism(psf=AberratedPSF(nodes=2)), np.random.SeedSequence(1), False)
    >>> field = draw_aberration_field(np.random.default_rng(1), realism.psf, (64, 64))
    >>> grid = aberrated_psf_grid(galsim, "g", (64, 64), realism.psf, field, 0.1, None, make_gsparams(galsim))
    >>> grid.images.shape
    (4, 256, 256)
    """
    aperture = make_aperture(galsim, band, options, gsparams)
    jitter = (jitter_fwhm, options.jitter_ellipticity, options.jitter_angle)
    node_x, node_y = node_positions(shape, options.nodes)
    aberrations = field.at(node_x, node_y)
    profiles = [_optics(galsim, band, node, aperture, gsparams) for node in aberrations]
    in_band_waves = aberrations * ABERRATION_REFERENCE_WAVELENGTH / CSST_BANDS[band].effective_wavelength
    centre = field.at((shape[1] - 1) / 2, (shape[0] - 1) / 2)

    def wide_optics():
        wide_field = 2 * _WIDE_HALF_SIZE * PIXEL_SCALE
        aperture = make_aperture(galsim, band, options, gsparams, field_of_view=wide_field)
        return _optics(galsim, band, centre, aperture, gsparams)

    return _grid_from_profiles(
        galsim, band, shape, options.nodes, profiles, jitter, kernel, gsparams, in_band_waves, wide_optics
    )


def uniform_psf_grid(galsim, band, shape, conditions, kernel, gsparams):
    """A one-node grid with the field's nominal (or varied) PSF model, for realism without ``psf``."""
    profile = optical_psf(galsim, band, conditions, gsparams)
    zernikes = np.full((1, 8), np.nan)
    return _grid_from_profiles(
        galsim, band, shape, 1, [profile], None, kernel, gsparams, zernikes, lambda: profile
    )
