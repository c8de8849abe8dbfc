"""CSST-like multi-band sky simulator built on GalSim.

The simulator renders fields (not isolated stamps) of stars and bulge+disk
galaxies in the seven CSST survey bands with the CSST public instrument figures
of `astro_stargal.instrument`: 0.074 arcsec pixels, a wavelength-dependent
PSF, photon-counting AB zero points from throughput, aperture and band edges,
sky, dark current and read noise for the wide-survey exposures (2 x 150 s, or
4 x 150 s in NUV and y), and saturation at the detector full well.

Images are background-subtracted count rates (``BUNIT = 'electron/s'``) with a
celestial TAN WCS; the truth table lists every source with its true AB
magnitudes, redshift, size and shape.

Conventions
-----------
* Pixel coordinates in the truth table follow astropy (0-based, the centre of
  the first pixel is ``(0, 0)``).
* ``mag = MAGZERO - 2.5 log10(flux in electron/s)``.
* ``half_light_radius`` is the circularised half-light radius in the r band
  (arcsec); ``position_angle`` is measured from the image +x axis towards +y
  (degrees); ``ellipticity`` is ``1 - b/a`` of the disk (or single Sersic).
* True magnitudes fainter than 40 (no flux in the band, e.g. blueward of the
  Lyman limit of a high-redshift galaxy) are stored as 40.

Depth definition
----------------
`measure_depth` reports the 5-sigma point-source depth as the total magnitude
of a point source whose flux in a circular aperture of radius 2.5 pixels
(0.185 arcsec, about three times the r-band PSF FWHM in diameter) is five times
the standard deviation of sky-aperture sums. The aperture-to-total correction
``APFRAC`` of the field's PSF is written to every image header. With the
nominal PSF this definition reproduces the CSST table depths to about 0.15 mag
in all bands (smaller apertures give deeper numbers, larger ones shallower).

Generalisation (``variation=True``)
-----------------------------------
Science fields default to the nominal instrument (``variation=False``) so that
they are reproducible and comparable with the CSST table. Training sets should
use ``variation=True``: each field then draws its own PSF model (Airy+Gaussian
jitter, Moffat with beta 2.5-5, or centrally obscured Airy+jitter) with a
FWHM between about 0.09 and 0.16 arcsec, a sky level within +-20 percent of
nominal per band, a different galaxy SED mix, and a population of
single-Sersic galaxies (n = 0.5-5) alongside the bulge+disk ones.

In three varied fields out of four, stars are not pure black bodies, so that a
classifier cannot lean on the black-body colour locus; the fourth keeps the
nominal black bodies, so that the limit of weak departures stays in the
training data. In the first kind, each star's spectrum is a black body times UV line blanketing blueward of
450 nm (stronger for cooler stars), a Balmer jump at 364.6 nm (for about
6500-15000 K, deepest near 9500 K), TiO troughs below 4200 K (495-560,
620-720 and 760-800 nm, deepening as the star cools) and interstellar
reddening, with random strengths per star. The stars' ``E(B-V)`` is
exponential with a mean drawn per field between 0 and 0.15; galaxies get a
smaller foreground ``E(B-V)`` (0-0.05) per field. Extinction follows
Cardelli, Clayton & Mathis (1989) with ``R_V = 3.1``. The drawn r magnitude is
the observed one, so dust changes colours, not r-band counts. The truth table
of such a field gives stars ``sed_type = 'MBB'`` (modified black body); every
varied field's table has an extra ``ebv`` column (mag, zero for black-body
stars).

The drawn conditions are written to the headers (``STARSED``, ``EBVSTAR`` and
``EBVGAL`` for the stellar SEDs and reddening) and to the truth-table metadata.

Skies that look like real co-adds (``realism=Realism()``)
---------------------------------------------------------
``simulate_field(size, seed=..., realism=Realism())`` renders what real
co-added tiles have and the nominal field lacks; each part can be set
explicitly or switched off (`Realism`, `AberratedPSF`, `Coadd`, `Defects`,
`Populations` list every option with its typical value and random range).
With ``variation=True`` every option left unset is drawn at random per field.
Nominal fields (``realism=None``) are unchanged, bit for bit.

* PSF: a GalSim ``OpticalPSF`` (obscured pupil, struts, Zernike defocus,
  astigmatism, coma, trefoil and spherical) whose aberrations vary smoothly
  over the tile and, as a fixed wavefront error, scale as 1/lambda, convolved
  with an elliptical Gaussian jitter; ``AberratedPSF(r_fwhm=...)`` sets the
  r-band FWHM at the tile centre (0.08-0.25 arcsec drawn with variation).
  It is tabulated on a 4 x 4 grid of nodes over the tile and each source
  takes the PSF of its cell. Bright stars get diffraction spikes out to
  9.5 arcsec.
* Co-adds: 2 (4 in NUV and y) dithered 150 s exposures, each with its own
  noise, cosmic rays and chip gap, resampled to the tile with a Lanczos3 (or
  bilinear) kernel and averaged with inverse-variance weights, so the noise is
  correlated and the PSF broader; parts of the tile have fewer exposures.
* Defects: residual cosmic rays, warm pixels, saturated stars with bleed
  trails, smooth sky-subtraction residuals.
* Populations: Sersic galaxies (n = 0.5-6), star-forming clumps (bluer than
  their galaxy), close mergers, white dwarfs, M dwarfs with TiO/CaH/VO bands,
  unresolved and resolved (0.05-0.3 arcsec) binaries, QSOs, saturating stars.

Beside each image ``{band}.fits`` `write_field` and `simulate_tiles` write
``{band}.weight.fits`` (``WEIGHT``: inverse variance of the background in
(electron/s)^-2, zero where nothing was measured or a pixel saturated;
``NEXP``: exposures per pixel), ``{band}.psf.fits`` (the true PSF of every node,
with the pixel and resampling, 4 times oversampled, and a ``NODES`` table of
their positions, FWHM, ellipticity and Zernike coefficients) and
``{band}.defects.fits`` (`DefectFlag` bits per pixel); ``simulate_field(...,
return_maps=True)`` returns them in memory. Headers record the PSF at the
tile centre (``PSFFWHM``: optics and jitter; ``PSFFWHMC``: with resampling;
``PSFELL``), the exposures and their dithers, and the defect rates; the
truth-table metadata records the resolved options (``realism``), the
aberration pattern and per-band summaries (``bands``).

A realistic truth table has these columns besides the nominal ones:

* ``point_like`` (bool): what ``p_star`` should say, True for stars and QSOs;
* ``population``: ``star`` (main sequence), ``m_dwarf``, ``white_dwarf``,
  ``unresolved_binary``, ``qso`` or ``galaxy``;
* ``system``: the ``id`` of the system a source belongs to (its own id for a
  single source; the primary's id for both members of a resolved binary or a
  merger), so that evaluation can report pairs apart;
* ``separation`` (arcsec): distance between the two members of a system, NaN
  for single sources;
* ``n_clumps``: star-forming clumps of a galaxy;
* ``companion_temperature`` (K): the unresolved companion of a binary, else 0.

How QSOs are scored
-------------------
A QSO is a point source, and the classifier's ``p_star`` says "point-like".
QSOs therefore count with the stars: train and score on ``point_like``
(``truth_column='point_like'`` in evaluation, ``label_column='point_like'``
in training), and report them apart through ``label == 'qso'`` (or
``population``). A resolved binary is two stars, one row each; an unresolved
binary is one star.
"""

from ._conditions import FieldConditions, draw_field_conditions
from ._defects import DefectFlag
from ._demo_data import make_demo_data
from ._depth import DEPTH_APERTURE_RADIUS, measure_depth, validate_field
from ._field import simulate_field, simulate_tiles, write_field
from ._galsim import import_galsim, make_gsparams
from ._populations import DEFAULT_GALAXY_DENSITY, DEFAULT_STAR_DENSITY, draw_galaxies, draw_stars
from ._psf import BandPSF, build_band_psf
from ._realism import AberratedPSF, Coadd, Defects, Populations, Realism

__all__ = [
    "DEFAULT_GALAXY_DENSITY",
    "DEFAULT_STAR_DENSITY",
    "DEPTH_APERTURE_RADIUS",
    "AberratedPSF",
    "BandPSF",
    "Coadd",
    "DefectFlag",
    "Defects",
    "FieldConditions",
    "Populations",
    "Realism",
    "build_band_psf",
    "draw_field_conditions",
    "draw_galaxies",
    "draw_stars",
    "import_galsim",
    "make_demo_data",
    "make_gsparams",
    "measure_depth",
    "simulate_field",
    "simulate_tiles",
    "validate_field",
    "write_field",
]
