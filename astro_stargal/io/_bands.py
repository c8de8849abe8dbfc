"""Which of the model's bands a name means: the one rule for every band name a user or a header gives.

A name means a band when it equals it exactly; otherwise when it equals
exactly one band once surrounding blanks and case are ignored (``'R'`` and
``'r '`` mean ``r``, ``'nuv'`` means ``NUV``). Where two bands differ only in
case (``u`` and ``U``), a name that is neither exactly is refused rather than
guessed. The rule holds for the keys of ``images`` and ``zeropoints``, for
``--image``/``--zeropoint`` on the command line, and for the band a FITS
header names. (In ``'file.fits[ext]'`` the extension name is FITS's own
``EXTNAME``, which FITS compares ignoring case.)

A header names a band through its ``FILTER``, ``BAND`` or ``EXTNAME`` keyword
(the first of them that names one of the model's bands): the whole value by
the rule above, or else the one band among the words of the value, so that
``'CSST-r'``, ``'SDSS r'`` and ``'g.MP9401'`` name ``r``, ``r`` and ``g``.
A value that names none of the model's bands (``'SCI'``, ``'F606W'``) says
nothing.
"""

import re

__all__ = ["HEADER_BAND_KEYWORDS", "band_named_by_header", "resolve_band"]

#: Header keywords that may name an image's band, in the order they are read.
HEADER_BAND_KEYWORDS = ("FILTER", "BAND", "EXTNAME")

_WORD_SEPARATORS = re.compile(r"[^0-9A-Za-z]+")


def resolve_band(name, bands, *, what="band name"):
    """The band of ``bands`` that ``name`` means (see the module's rule), or a `ValueError`.

    Parameters
    ----------
    name : str
        What the user wrote.
    bands : sequence of str
        The model's bands.
    what : str, optional
        What ``name`` is, for the error message.

    Returns
    -------
    band : str
        An element of ``bands``.

    Raises
    ------
    ValueError
        If ``name`` means no band, or could mean two bands that differ only in case.

    Examples
    --------
    >>> resolve_band("R", ["NUV", "u", "g", "r"])
    'r'
    >>> resolve_band("nuv", ["NUV", "u", "g", "r"])
    'NUV'
    """
    band, candidates = _match(name, bands)
    if band is not None:
        return band
    if len(candidates) > 1:
        msg = f"{what} {name!r} could mean any of the bands {candidates}; write it exactly"
    else:
        msg = f"unknown {what} {name!r}; the model's bands are {list(bands)}"
    raise ValueError(msg)


def band_named_by_header(header, bands):
    """The band of ``bands`` that a FITS header names, and the card that names it; ``(None, None)`` if none.

    Parameters
    ----------
    header : `~astropy.io.fits.Header` or dict-like
        Read for `HEADER_BAND_KEYWORDS`, in order.
    bands : sequence of str
        The model's bands.

    Returns
    -------
    band : str or None
    card : str or None
        ``"KEYWORD = 'value'"``, to quote in messages.

    Examples
    --------
    >>> band_named_by_header({"EXTNAME": "SCI", "FILTER": "CSST-r"}, ["g", "r"])
    ('r', "FILTER = 'CSST-r'")
    >>> band_named_by_header({"EXTNAME": "SCI"}, ["g", "r"])
    (None, None)
    """
    for keyword in HEADER_BAND_KEYWORDS:
        value = header.get(keyword)
        if not isinstance(value, str) or not value.strip():
            continue
        band, _ = _match(value, bands)
        if band is None:
            words = {_match(word, bands)[0] for word in _WORD_SEPARATORS.split(value) if word}
            words.discard(None)
            band = words.pop() if len(words) == 1 else None
        if band is not None:
            return band, f"{keyword} = {value!r}"
    return None, None


def _match(name, bands):
    """``(band, candidates)``: the band ``name`` means (None if none or ambiguous) and the near matches."""
    if not isinstance(name, str):
        return None, []
    if name in bands:
        return name, [name]
    folded = name.strip().casefold()
    candidates = [band for band in bands if band.casefold() == folded]
    return (candidates[0] if len(candidates) == 1 else None), candidates
