"""Warnings issued by astro_stargal."""

from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["StarGalaxyWarning"]


class StarGalaxyWarning(AstropyUserWarning):
    """Warning issued by astro_stargal (an `~astropy.utils.exceptions.AstropyUserWarning`)."""
