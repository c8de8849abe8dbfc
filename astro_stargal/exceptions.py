"""Warnings issued by astro_stargal."""

from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["StarGalaxyWarning"]


class StarGalaxyWarning(AstropyUserWarning):
    """Warning issued by astro_stargal (an `~astropy.utils.exceptions.AstropyUserWarning`).

    Examples
    --------
    Silence the package's warnings (for example the one about assumed zero
    points) within a block:

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", StarGalaxyWarning)
    ...     warnings.warn("assuming the CSST zero points", StarGalaxyWarning)
    """
