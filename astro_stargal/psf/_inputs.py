"""PSFs the user gives: a PSFEx ``.psf`` file, a FITS PSF image or grid, an array, a GalSim profile, or a `PSFModel`.

Every form becomes a `PSFModel` of effective (pixel-convolved) PSFs:

- a PSFEx model is evaluated at a grid of nodes over the area it was fitted
  on (its polynomial in ``X_IMAGE``, ``Y_IMAGE``; 1-based FITS pixels become
  0-based), sampled every ``PSF_SAMP`` image pixels;
- a FITS PSF image (`read_psf_image`) is one effective PSF, or a cube of them
  with a ``NODES`` table of their pixel positions (``x``, ``y``), sampled
  ``OVERSAMP`` times per image pixel (the simulator's ``{band}.psf.fits``);
  ``'file.fits[ext]'`` reads one extension of a file holding several;
- an array is one effective PSF valid everywhere (``(m, m)``), or one per
  node with the nodes given;
- a GalSim profile is taken as the optical PSF: it is convolved with the
  pixel and drawn `GALSIM_OVERSAMPLING` times finer than the image.
"""

import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from ._model import PSFModel

__all__ = [
    "GALSIM_OVERSAMPLING",
    "PSFEX_NODES_PER_SIDE",
    "as_psf_model",
    "psf_from_galsim",
    "read_psf_file",
    "read_psf_image",
    "read_psfex",
]

#: Samples per image pixel when a GalSim profile is drawn.
GALSIM_OVERSAMPLING = 4

#: Nodes along each axis at which a PSFEx model's polynomial is evaluated.
PSFEX_NODES_PER_SIDE = 4

#: ``'file.fits[ext]'``: one extension of a FITS file, as for images.
_PATH_WITH_EXTENSION = re.compile(r"^(?P<path>.+)\[(?P<ext>[^\[\]]+)\]$")


def read_psfex(path, *, nodes_per_side=PSFEX_NODES_PER_SIDE):
    """Read a PSFEx ``.psf`` model and evaluate it on a grid of nodes.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The ``.psf`` file (a ``PSF_DATA`` binary table whose ``PSF_MASK``
        holds the polynomial's basis images).
    nodes_per_side : int, optional
        Grid of nodes over the area the model was fitted on.

    Returns
    -------
    psf : `PSFModel`

    Raises
    ------
    ValueError
        If the file is not a PSFEx model of ``X_IMAGE``/``Y_IMAGE``.

    Examples
    --------
    >>> psf = read_psfex("r.psf")  # doctest: +SKIP
    >>> psf.fwhm  # doctest: +SKIP
    """
    path = Path(path)
    try:
        with fits.open(path) as hdus:
            hdu = hdus["PSF_DATA"] if "PSF_DATA" in hdus else hdus[1]
            header = hdu.header
            basis = np.asarray(hdu.data["PSF_MASK"][0], dtype=np.float64)
    except (OSError, KeyError, IndexError, TypeError) as error:
        msg = f"{str(path)!r} is not a readable PSFEx model (a PSF_DATA table with PSF_MASK): {error}"
        raise ValueError(msg) from error
    names = [header.get(f"POLNAME{axis}") for axis in (1, 2)]
    if header.get("POLNAXIS", 0) not in (0, 2) or (
        header.get("POLNAXIS") and names != ["X_IMAGE", "Y_IMAGE"]
    ):
        msg = f"{str(path)!r}: only PSFEx models in X_IMAGE, Y_IMAGE are supported, got {names}"
        raise ValueError(msg)
    sampling = float(header.get("PSF_SAMP", 1.0))
    if basis.ndim == 2:
        basis = basis[None]
    if not header.get("POLNAXIS"):
        return PSFModel(basis[:1], [[0.0, 0.0]], oversampling=1 / sampling, origin="psfex")
    degree = int(header["POLDEG1"])
    zero = np.array([header["POLZERO1"], header["POLZERO2"]], dtype=np.float64)
    scale = np.array([header["POLSCAL1"], header["POLSCAL2"]], dtype=np.float64)
    # The fitted area: POLZERO +- POLSCAL / 2 in 1-based pixels.
    fractions = (np.arange(nodes_per_side) + 0.5) / nodes_per_side - 0.5
    grid_x, grid_y = np.meshgrid(zero[0] + fractions * scale[0], zero[1] + fractions * scale[1])
    nodes = np.column_stack([grid_x.ravel(), grid_y.ravel()])
    images = np.array([_psfex_image(basis, degree, (node - zero) / scale) for node in nodes])
    return PSFModel(images, nodes - 1.0, oversampling=1 / sampling, origin="psfex")


def _psfex_image(basis, degree, position):
    """PSFEx's polynomial at one scaled position: terms ``x**i * y**j``, ``i`` fastest, ``i + j <= degree``."""
    image = np.zeros(basis.shape[1:])
    term = 0
    for j in range(degree + 1):
        for i in range(degree + 1 - j):
            image += position[0] ** i * position[1] ** j * basis[term]
            term += 1
    if term != len(basis):
        msg = f"a degree-{degree} PSFEx polynomial has {term} terms, but the file holds {len(basis)} basis images"
        raise ValueError(msg)
    return image


def read_psf_image(path, *, extension=None):
    """Read an effective PSF image, or a grid of them, from a FITS file.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        A FITS file whose ``PSF`` extension (or first image) is one PSF
        ``(m, m)`` or a cube ``(n_nodes, m, m)``; a cube needs a ``NODES``
        table with each node's 0-based pixel ``x`` and ``y``. ``OVERSAMP``
        in the header gives the samples per image pixel (default 1).
    extension : str or int, optional
        Read this extension instead (e.g. a band's, in a file holding the
        PSF of every band).

    Returns
    -------
    psf : `PSFModel`

    Raises
    ------
    ValueError
        If the file holds no PSF image, or a cube without its nodes.
    KeyError
        If there is no such ``extension``.

    Examples
    --------
    >>> psf = read_psf_image("r.psf.fits")  # doctest: +SKIP
    >>> len(psf), psf.oversampling  # doctest: +SKIP
    (16, 4.0)
    """
    path = Path(path)
    with fits.open(path) as hdus:
        images = [hdu for hdu in hdus if getattr(hdu, "is_image", False) and hdu.data is not None]
        named = [hdu for hdu in images if hdu.name == "PSF"]
        if extension is not None:
            if extension not in hdus:
                msg = f"{str(path)!r} has no extension {extension!r}"
                raise KeyError(msg)
            named = [hdus[extension]]
        if not (named or images):
            msg = f"{str(path)!r} holds no PSF image"
            raise ValueError(msg)
        hdu = (named or images)[0]
        data = np.asarray(hdu.data, dtype=np.float64)
        oversampling = float(hdu.header.get("OVERSAMP", 1.0))
        if data.ndim == 2:
            return PSFModel(data, [[0.0, 0.0]], oversampling=oversampling, origin="array")
        if "NODES" not in hdus:
            msg = f"{str(path)!r}: a cube of {len(data)} PSFs needs a NODES table of their pixel positions"
            raise ValueError(msg)
        nodes = hdus["NODES"].data
        positions = np.column_stack([np.asarray(nodes["x"], float), np.asarray(nodes["y"], float)])
    return PSFModel(data, positions, oversampling=oversampling, origin="array")


def read_psf_file(path):
    """Read a PSF from a file: a PSFEx model (a ``PSF_DATA`` table) or a FITS PSF image or grid.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The file; ``'file.fits[ext]'`` reads the PSF image in extension
        ``ext`` (a name or a number) of a file that holds several.

    Returns
    -------
    psf : `PSFModel`

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If it is neither, or has no extension ``ext``.

    Examples
    --------
    >>> psf = read_psf_file("r.psf")  # doctest: +SKIP
    >>> psf = read_psf_file("psfs.fits[r]")  # doctest: +SKIP
    """
    extension = None
    match = _PATH_WITH_EXTENSION.match(str(path))
    if match and not Path(path).exists():
        path, extension = match["path"], match["ext"]
        extension = int(extension) if extension.isdigit() else extension
    path = Path(path)
    if not path.is_file():
        msg = f"PSF file {str(path)!r} does not exist"
        raise FileNotFoundError(msg)
    try:
        with fits.open(path) as hdus:
            is_psfex = "PSF_DATA" in hdus
    except OSError as error:
        msg = f"{str(path)!r} is not a FITS file ({error}); give a PSFEx .psf or a FITS PSF image"
        raise ValueError(msg) from error
    if is_psfex:
        return read_psfex(path)
    try:
        return read_psf_image(path, extension=extension)
    except KeyError as error:
        raise ValueError(error.args[0]) from error


def psf_from_galsim(profile, pixel_scale, *, size=2.5):
    """Draw a GalSim profile (the optical PSF, in arcsec) as an effective PSF.

    Parameters
    ----------
    profile : ``galsim.GSObject``
        The PSF without the pixel.
    pixel_scale : float
        Image pixel scale in arcsec.
    size : float, optional
        Side of the drawn image in arcsec.

    Returns
    -------
    psf : `PSFModel`
        One node, valid over the whole image.

    Examples
    --------
    >>> import galsim
    >>> psf = psf_from_galsim(galsim.Gaussian(fwhm=0.12), 0.074)
    >>> 1.7 < float(psf.fwhm[0]) < 2.0  # 0.12" with the 0.074" pixel, in pixels
    True
    """
    import galsim

    samples = int(np.ceil(size / pixel_scale * GALSIM_OVERSAMPLING)) | 1
    effective = galsim.Convolve(profile, galsim.Pixel(pixel_scale))
    image = effective.drawImage(
        nx=samples, ny=samples, scale=pixel_scale / GALSIM_OVERSAMPLING, method="no_pixel"
    ).array
    return PSFModel(image, [[0.0, 0.0]], oversampling=GALSIM_OVERSAMPLING, origin="galsim")


def as_psf_model(psf, band, pixel_scale):
    """Turn any accepted PSF form into a `PSFModel`.

    Parameters
    ----------
    psf : `PSFModel`, str, `~pathlib.Path`, 2D `~numpy.ndarray` or ``galsim.GSObject``
        A model, a file (`read_psf_file`: a PSFEx ``.psf`` or a FITS PSF image
        or grid), an effective PSF sampled at the image pixels (centred in the
        array), or a GalSim optical PSF.
    band : str
        For error messages.
    pixel_scale : float
        Image pixel scale in arcsec (for GalSim profiles).

    Returns
    -------
    psf : `PSFModel`

    Raises
    ------
    TypeError
        If ``psf`` has none of these forms.

    Examples
    --------
    >>> yy, xx = np.mgrid[:15, :15] - 7.0
    >>> as_psf_model(np.exp(-(xx**2 + yy**2) / 1.3), "r", 0.074).origin
    'array'
    """
    if isinstance(psf, PSFModel):
        return psf
    if isinstance(psf, (str, Path)):
        return read_psf_file(psf)
    if hasattr(psf, "drawImage"):
        return psf_from_galsim(psf, pixel_scale)
    if isinstance(psf, np.ndarray):
        if psf.ndim != 2 or psf.shape[0] != psf.shape[1] or psf.shape[0] % 2 == 0:
            msg = (
                f"band {band!r}: a PSF array must be square with an odd side, centred; got shape {psf.shape}"
            )
            raise ValueError(msg)
        return PSFModel(psf, [[0.0, 0.0]], oversampling=1, origin="array")
    msg = (
        f"band {band!r}: cannot use a PSF of type {type(psf).__name__}; give a PSFEx .psf path, "
        "a 2-D array, a GalSim profile or a PSFModel"
    )
    raise TypeError(msg)
