"""Shared fixtures: a small random model and a small synthetic multi-band CSST field.

There are no trained weights in the repository, so every test runs a randomly
initialised `~astro_stargal.models.StarGalaxyNet` (ResNet-18 image branch)
saved with the package's own `~astro_stargal.models.save_weights`. Its
probabilities mean nothing physically, but they exercise the whole pipeline
and are deterministic on a CPU.

Fixtures
--------
``bands``
    The 7 CSST bands in wavelength order.
``model_dir``
    Directory of the random test model (session scope, created once).
``classify``
    `~astro_stargal.classify_sources` with ``weights=model_dir``, ``device='cpu'``
    and ``psf=field_psf``.
``field_psf``
    Band -> the synthetic fields' Gaussian PSF (too few stars to measure it).
``make_wcs``
    Factory for a TAN WCS at the CSST pixel scale (0.074 arcsec/px).
``make_field``
    Factory for a `SyntheticField`: Gaussian-PSF stars and extended galaxies
    injected at known pixel positions and total fluxes, plus Gaussian noise.
``field``
    The default 128 x 128 px field with three stars and one galaxy.
``assert_table_unchanged``
    ``assert_table_unchanged(before, after)``: same class, columns, values,
    units, descriptions, masks and ``meta`` (compare against a deep copy).

Images are handed out as fresh copies (`SyntheticField.images` and friends), so
a test may damage its copy without affecting the others.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest
import torch
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy.special import erf

from astro_stargal import classify_sources
from astro_stargal.instrument import PIXEL_SCALE, band_order
from astro_stargal.models import StarGalaxyNet, save_weights
from astro_stargal.pipeline import FEATURE_NAMES

#: Stamp side of the test model in pixels.
TEST_STAMP_SIZE = 32

#: AB zero point written in every synthetic image header (``MAGZERO``).
TEST_ZEROPOINT = 25.0

#: Per-pixel sky noise of the synthetic images (image units).
TEST_NOISE = 1.0

#: Gaussian PSF sigma in pixels (FWHM about 1.9 px, undersampled like CSST).
PSF_SIGMA = 0.8

#: Sky position of the field centre (deg).
FIELD_CENTRE = (150.1, 2.2)


@dataclass(frozen=True)
class InjectedSource:
    """A source placed in a synthetic field.

    ``sigma`` is the Gaussian width in pixels: `PSF_SIGMA` for a star, larger
    for a galaxy. ``flux`` is the total flux in image units in every band.
    """

    x: float
    y: float
    flux: float
    sigma: float = PSF_SIGMA

    @property
    def is_star(self):
        """True for a point source."""
        return self.sigma == PSF_SIGMA


#: The default field: three stars (bright, faint, central) and one extended galaxy, all well inside.
DEFAULT_SOURCES = (
    InjectedSource(40.3, 50.7, 5000.0),
    InjectedSource(90.6, 30.2, 1500.0),
    InjectedSource(65.8, 64.4, 3000.0),
    InjectedSource(70.2, 100.1, 8000.0, sigma=3.0),
)


def gaussian_source(shape, x, y, flux, sigma):
    """A pixel-integrated circular Gaussian of total ``flux`` centred at 0-based ``(x, y)``."""
    ny, nx = shape

    def pixel_fractions(n, centre):
        edges = (np.arange(n + 1) - 0.5 - centre) / (np.sqrt(2.0) * sigma)
        return np.diff(0.5 * erf(edges))

    return flux * np.outer(pixel_fractions(ny, y), pixel_fractions(nx, x))


#: The synthetic fields' effective PSF, sampled at the pixels (what `gaussian_source` injects for a star).
PSF_ARRAY = gaussian_source((15, 15), 7.0, 7.0, 1.0, PSF_SIGMA)


def tan_wcs(shape, *, centre=FIELD_CENTRE, pixel_scale=PIXEL_SCALE):
    """A gnomonic (TAN) WCS with north up, east left, centred on the image."""
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(centre)
    wcs.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    wcs.wcs.cdelt = [-pixel_scale / 3600.0, pixel_scale / 3600.0]
    wcs.wcs.cunit = ["deg", "deg"]
    return wcs


@dataclass(frozen=True)
class SyntheticField:
    """A synthetic multi-band field and the table of its sources.

    Attributes
    ----------
    data : dict
        Band -> read-only 2D float32 array (hand out copies with `images`).
    wcs : `~astropy.wcs.WCS`
        Shared celestial WCS of all bands.
    sources : tuple of `InjectedSource`
        What was injected, in table order.
    """

    data: dict
    wcs: WCS
    sources: tuple

    @property
    def bands(self):
        """Band names, in wavelength order."""
        return tuple(self.data)

    @property
    def shape(self):
        """Image shape ``(ny, nx)``."""
        return next(iter(self.data.values())).shape

    @property
    def zeropoints(self):
        """Band -> AB zero point, for image forms without a header."""
        return dict.fromkeys(self.bands, TEST_ZEROPOINT)

    def header(self, **keywords):
        """A FITS header with the WCS, ``MAGZERO`` and any extra keywords."""
        header = self.wcs.to_header()
        header["MAGZERO"] = TEST_ZEROPOINT
        for keyword, value in keywords.items():
            header[keyword] = value
        return header

    def images(self, bands=None, **keywords):
        """Band -> fresh `~astropy.io.fits.ImageHDU` (header with WCS, ``MAGZERO`` and ``keywords``)."""
        return {
            band: fits.ImageHDU(self.data[band].copy(), header=self.header(**keywords))
            for band in (bands or self.bands)
        }

    def pairs(self, bands=None):
        """Band -> fresh ``(array, WCS)`` pair; pass ``zeropoints=field.zeropoints`` with these."""
        return {band: (self.data[band].copy(), self.wcs.deepcopy()) for band in (bands or self.bands)}

    def table(self):
        """A fresh source table: ``id``, ``ra``/``dec`` in degrees, with ``meta``."""
        sky = self.wcs.pixel_to_world([s.x for s in self.sources], [s.y for s in self.sources])
        table = Table(meta={"survey": "synthetic", "comments": ["made by conftest"]})
        table["id"] = np.arange(1, len(self.sources) + 1)
        table["ra"] = sky.ra.to(u.deg)
        table["dec"] = sky.dec.to(u.deg)
        table["ra"].description = "Right ascension (ICRS)"
        return table

    def pixel_table(self):
        """A fresh source table with 0-based pixel ``x``/``y`` columns instead of sky positions."""
        return Table({"id": np.arange(1, len(self.sources) + 1), "x": self.x, "y": self.y})

    @property
    def x(self):
        """Injected 0-based pixel x of every source."""
        return np.array([source.x for source in self.sources])

    @property
    def y(self):
        """Injected 0-based pixel y of every source."""
        return np.array([source.y for source in self.sources])


def build_field(
    shape=(128, 128), sources=DEFAULT_SOURCES, *, bands=None, noise=TEST_NOISE, seed=0, dtype=np.float32
):
    """Render a `SyntheticField`: the same sources in every band, independent noise per band.

    ``sources`` holds `InjectedSource` objects or ``(x, y, flux[, sigma])`` tuples.
    """
    bands = tuple(bands or band_order())
    sources = tuple(s if isinstance(s, InjectedSource) else InjectedSource(*s) for s in sources)
    rng = np.random.default_rng(seed)
    noiseless = np.zeros(shape)
    for source in sources:
        noiseless += gaussian_source(shape, source.x, source.y, source.flux, source.sigma)
    data = {}
    for band in bands:
        image = (noiseless + rng.normal(0.0, noise, size=shape)).astype(dtype)
        image.flags.writeable = False
        data[band] = image
    return SyntheticField(data=data, wcs=tan_wcs(shape), sources=tuple(sources))


@pytest.fixture(scope="session")
def bands():
    """The 7 CSST bands in wavelength order."""
    return band_order()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, bands):
    """Directory of a randomly initialised, int8-quantised ResNet-18 test model."""
    torch.manual_seed(0)
    net = StarGalaxyNet(len(bands), len(FEATURE_NAMES), backbone="resnet18")
    metadata = {
        "name": "test",
        "bands": list(bands),
        "stamp_size": TEST_STAMP_SIZE,
        "pixel_scale": PIXEL_SCALE,
        "feature_names": list(FEATURE_NAMES),
    }
    return save_weights(net, tmp_path_factory.mktemp("test_model"), metadata=metadata)


@pytest.fixture(scope="session")
def field_psf(bands):
    """Band -> the synthetic fields' PSF array, for every band (as the `classify` fixture passes it)."""
    return dict.fromkeys(bands, PSF_ARRAY)


@pytest.fixture(scope="session")
def classify(model_dir, bands):
    """`~astro_stargal.classify_sources` bound to the test model on the CPU, with the fields' known PSF.

    The synthetic fields hold too few stars to measure their PSF, so their
    Gaussian PSF is given, as a user who knows it would give it.
    """
    return partial(classify_sources, weights=model_dir, device="cpu", psf=dict.fromkeys(bands, PSF_ARRAY))


@pytest.fixture(scope="session")
def make_wcs():
    """Factory: ``make_wcs(shape, centre=..., pixel_scale=...)`` -> TAN `~astropy.wcs.WCS`."""
    return tan_wcs


@pytest.fixture(scope="session")
def make_field():
    """Factory: ``make_field(shape, sources, bands=..., noise=..., seed=..., dtype=...)`` -> `SyntheticField`.

    ``sources`` is a sequence of ``(x, y, flux)`` or ``(x, y, flux, sigma)`` tuples
    (0-based pixels, total flux, Gaussian sigma in pixels; a star by default).
    """
    return build_field


@pytest.fixture(scope="session")
def field():
    """The default 128 x 128 px, 7-band field with three stars and one galaxy."""
    return build_field()


def table_unchanged(before, after):
    """Assert that ``after`` is an identical copy of ``before``: class, columns, values, units, masks, meta."""
    assert type(after) is type(before)
    assert after.colnames == before.colnames
    assert after.meta == before.meta
    assert len(after) == len(before)
    for name in before.colnames:
        old, new = before[name], after[name]
        assert type(new) is type(old), name
        assert getattr(new, "unit", None) == getattr(old, "unit", None), name
        assert getattr(new, "description", None) == getattr(old, "description", None), name
        if hasattr(old, "ra"):
            np.testing.assert_array_equal(new.ra.deg, old.ra.deg, err_msg=name)
            np.testing.assert_array_equal(new.dec.deg, old.dec.deg, err_msg=name)
            continue
        np.testing.assert_array_equal(np.ma.getmaskarray(new), np.ma.getmaskarray(old), err_msg=name)
        np.testing.assert_array_equal(np.ma.getdata(new), np.ma.getdata(old), err_msg=name)


@pytest.fixture(scope="session")
def assert_table_unchanged():
    """``assert_table_unchanged(before, after)``; take ``before`` with `copy.deepcopy` before the call."""
    return table_unchanged
