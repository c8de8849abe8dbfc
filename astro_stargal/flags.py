"""The ``sg_flags`` bit mask: what went wrong for a source, one bit per cause."""

import enum
import numbers

__all__ = ["SourceFlag", "describe_flags"]


class SourceFlag(enum.IntFlag):
    """Bits of the ``sg_flags`` column.

    A source whose ``p_star`` is NaN always has `OFF_IMAGE`, `BAD_POSITION` or
    `TILE_FAILED` set; every other bit is a warning on a source that was still
    classified.

    A flag prints as the names of its bits (``str`` and ``f"{flag}"``); a
    numeric format such as ``f"{flag:d}"`` gives the number.

    Examples
    --------
    >>> flags = SourceFlag.PARTIAL_OVERLAP | SourceFlag.LOW_SNR
    >>> int(flags)
    34
    >>> bool(flags & SourceFlag.LOW_SNR), bool(flags & SourceFlag.SATURATED)
    (True, False)
    >>> print(SourceFlag(296))
    BAND_MISSING|LOW_SNR|BLENDED
    >>> import numpy as np
    >>> print(SourceFlag(np.int32(34)))  # an entry of the sg_flags column
    PARTIAL_OVERLAP|LOW_SNR
    >>> f"{flags} = {flags:d}"
    'PARTIAL_OVERLAP|LOW_SNR = 34'
    """

    #: The source lies off every image (or its stamp has no valid pixel); not classified.
    OFF_IMAGE = 1
    #: The stamp runs off the edge of at least one image; the missing part is padded.
    PARTIAL_OVERLAP = 2
    #: The stamp holds NaN, infinite or masked pixels in at least one band.
    BAD_PIXELS = 4
    #: At least one of the model's bands is missing for this source (not given, or off that image).
    BAND_MISSING = 8
    #: A pixel near the centre reaches the image's saturation level in at least one band.
    SATURATED = 16
    #: Too faint to judge: the best band's aperture S/N is below 5.
    LOW_SNR = 32
    #: The position is NaN, masked or out of range; not classified.
    BAD_POSITION = 64
    #: Its tile failed in `~astro_stargal.distributed.classify_tiles` (see the failures it returns); not classified.
    TILE_FAILED = 128
    #: Another source of the table, at most 1.5 mag fainter, lies within 0.6" (`~astro_stargal.pipeline`):
    #: the stamp holds both, and ``p_star`` may describe the pair.
    BLENDED = 256
    #: The source's light is centred more than 0.1" from the table position (``sg_offset``); the
    #: stamps are cut at the centroid, but the table position may belong to another source.
    LARGE_SHIFT = 512
    #: A bright source's centroid could not be measured within 0.2" of the table position (a
    #: masked core, or light that leads away towards another source); the table position is used.
    CENTROID_FAILED = 1024
    #: The image's PSF where the source lies is outside the range the model was trained on (its
    #: FWHM or ellipticity in a band the source has); ``p_star`` may be unreliable.
    PSF_OUT_OF_RANGE = 2048
    #: The PSF of a band the source has could not be measured (too few isolated, unsaturated
    #: stars) nor was it given: the model's reference PSF is assumed and the range is unchecked.
    PSF_UNMEASURED = 4096

    @classmethod
    def _missing_(cls, value):
        # sg_flags entries are NumPy integers, which enum refuses as flag values unless made ints.
        if isinstance(value, numbers.Integral) and not isinstance(value, int):
            return cls(int(value))
        return super()._missing_(value)

    def __str__(self):
        # IntFlag prints as a bare number from Python 3.11 on; a flag value should say what it means.
        names = describe_flags(self)
        unknown = int(self) & ~sum(flag.value for flag in type(self))
        return "|".join([*names, str(unknown)] if unknown else names) or "0"

    def __format__(self, format_spec):
        if format_spec and format_spec[-1] in _NUMERIC_FORMATS:
            return int.__format__(int(self), format_spec)
        return format(str(self), format_spec)


#: Format types that ask for a flag's number rather than its names (``f"{flag:d}"``, ``f"{flag:#x}"``).
_NUMERIC_FORMATS = frozenset("bcdoxXneEfFgG%")


def describe_flags(value):
    """Return the names of the bits set in one ``sg_flags`` value.

    Parameters
    ----------
    value : int
        One entry of the ``sg_flags`` column.

    Returns
    -------
    names : list of str

    Examples
    --------
    >>> describe_flags(SourceFlag.PARTIAL_OVERLAP | SourceFlag.LOW_SNR)
    ['PARTIAL_OVERLAP', 'LOW_SNR']
    """
    return [flag.name for flag in SourceFlag if int(value) & flag.value]
