"""GalSim, imported on demand, and the accuracy settings of every profile the simulator draws."""

__all__ = ["ARCSEC_PER_RADIAN", "import_galsim", "make_gsparams"]

ARCSEC_PER_RADIAN = 206264.80624709636


def import_galsim():
    """Import GalSim, or explain how to install it.

    Returns
    -------
    galsim : module

    Raises
    ------
    ImportError
        If GalSim is not installed (it is the optional ``sim`` extra).

    Examples
    --------
    >>> galsim = import_galsim()
    >>> galsim.Gaussian(fwhm=0.1).flux
    1.0
    """
    try:
        import galsim
    except ImportError as exc:
        msg = "The simulator needs GalSim, an optional dependency: pip install astro_stargal[sim]"
        raise ImportError(msg) from exc
    return galsim


def make_gsparams(galsim):
    """The GalSim accuracy settings of every profile the simulator draws.

    Benchmarks that tabulate the simulator's PSF must use the same settings.

    Parameters
    ----------
    galsim : module
        GalSim, from `import_galsim`.

    Returns
    -------
    gsparams : ``galsim.GSParams``

    Examples
    --------
    >>> make_gsparams(import_galsim()).folding_threshold
    0.01
    """
    return galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3)
