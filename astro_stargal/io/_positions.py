"""Source positions from a table: a SkyCoord column, RA/Dec columns, or pixel x/y columns."""

from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord

__all__ = ["SourcePositions", "positions_from_table"]

#: Column-name pairs recognised as right ascension / declination, in degrees when unitless.
SKY_COLUMN_PAIRS = (
    ("ra", "dec"),
    ("RA", "DEC"),
    ("RA", "Dec"),
    ("ALPHA_J2000", "DELTA_J2000"),
    ("RAJ2000", "DEJ2000"),
    ("ra_deg", "dec_deg"),
)

#: Column-name pairs recognised as 0-based pixel positions (astropy convention).
PIXEL_COLUMN_PAIRS = (("x", "y"),)


@dataclass(frozen=True)
class SourcePositions:
    """Where the sources are: either sky coordinates or pixel positions.

    Attributes
    ----------
    sky : `~astropy.coordinates.SkyCoord` or None
        One entry per row (rows with a bad position hold a placeholder).
    x, y : 1D `~numpy.ndarray` or None
        0-based pixel positions, when the table gives pixels instead of sky.
    valid : 1D bool `~numpy.ndarray`
        False where the position is NaN, masked or out of range.

    Examples
    --------
    >>> from astropy.table import Table
    >>> positions = positions_from_table(Table({"x": [10.0, np.nan], "y": [5.0, 3.0]}))
    >>> len(positions), positions.sky is None
    (2, True)
    >>> positions.valid
    array([ True, False])
    """

    sky: SkyCoord | None
    x: np.ndarray | None
    y: np.ndarray | None
    valid: np.ndarray

    def __len__(self):
        return len(self.valid)

    def __getitem__(self, rows):
        return SourcePositions(
            sky=None if self.sky is None else self.sky[rows],
            x=None if self.x is None else self.x[rows],
            y=None if self.y is None else self.y[rows],
            valid=self.valid[rows],
        )

    def pixel_positions(self, wcs):
        """Return ``(x, y)`` 0-based pixel positions on the grid of ``wcs``.

        Bad positions come back as NaN.

        Raises
        ------
        ValueError
            If the positions are on the sky and ``wcs`` is None.
        """
        if self.sky is None:
            return self.x, self.y
        if wcs is None:
            msg = "sky positions need an image with a celestial WCS, and this image has none; give pixel x/y columns instead"
            raise ValueError(msg)
        x, y = wcs.world_to_pixel(self.sky)
        x = np.where(self.valid, x, np.nan)
        y = np.where(self.valid, y, np.nan)
        return np.atleast_1d(x), np.atleast_1d(y)


def positions_from_table(table, *, position_columns=None):
    """Find the source positions in ``table``.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The source table.
    position_columns : str or tuple of 2 str, optional
        A `~astropy.coordinates.SkyCoord` column name, or a ``(ra, dec)`` pair
        of columns (degrees if unitless), or ``('x', 'y')`` for 0-based pixel
        columns. By default a single SkyCoord column, a known RA/Dec pair (see
        `SKY_COLUMN_PAIRS`) or ``x``/``y`` is looked for; sky positions take
        precedence over pixel ones.

    Returns
    -------
    positions : `SourcePositions`

    Raises
    ------
    ValueError
        If no positions are found, several candidates compete, or the columns
        have units that are not angles.

    Examples
    --------
    >>> from astropy.table import Table
    >>> positions = positions_from_table(Table({"ra": [150.1], "dec": [2.2]}))
    >>> positions.sky.dec.deg
    array([2.2])
    """
    if position_columns is None:
        position_columns = _find_position_columns(table)
    if isinstance(position_columns, str):
        return _from_skycoord(table, position_columns)
    names = tuple(position_columns)
    if len(names) != 2:
        msg = f"position_columns must be one SkyCoord column or a pair of columns, got {position_columns!r}"
        raise ValueError(msg)
    missing = [name for name in names if name not in table.colnames]
    if missing:
        msg = f"position column(s) {missing} not in the table; its columns are {table.colnames}"
        raise ValueError(msg)
    if names in PIXEL_COLUMN_PAIRS:
        return _from_pixels(table, *names)
    return _from_sky_columns(table, *names)


def _find_position_columns(table):
    skycoord_columns = [name for name in table.colnames if isinstance(table[name], SkyCoord)]
    sky_pairs = [pair for pair in SKY_COLUMN_PAIRS if set(pair) <= set(table.colnames)]
    sky_candidates = skycoord_columns + sky_pairs
    if len(sky_candidates) > 1:
        msg = (
            f"several position columns found: {sky_candidates}; "
            "choose one with position_columns='...' or position_columns=('ra', 'dec')"
        )
        raise ValueError(msg)
    if sky_candidates:
        return sky_candidates[0]
    for pair in PIXEL_COLUMN_PAIRS:
        if set(pair) <= set(table.colnames):
            return pair
    looked_for = [
        "a SkyCoord column",
        *(f"{ra}/{dec}" for ra, dec in SKY_COLUMN_PAIRS),
        "x/y (pixels)",
    ]
    msg = (
        f"no source positions found in the table (columns {table.colnames}); looked for "
        f"{', '.join(looked_for)}; name them with position_columns="
    )
    raise ValueError(msg)


def _from_skycoord(table, name):
    if name not in table.colnames:
        msg = f"position column {name!r} not in the table; its columns are {table.colnames}"
        raise ValueError(msg)
    coords = table[name]
    if not isinstance(coords, SkyCoord):
        msg = f"position column {name!r} is not a SkyCoord; give a pair like ('ra', 'dec') instead"
        raise ValueError(msg)
    spherical = coords.spherical
    valid = np.isfinite(spherical.lon.deg) & np.isfinite(spherical.lat.deg)
    if valid.all():
        return SourcePositions(sky=coords, x=None, y=None, valid=valid)
    filled = SkyCoord(
        np.where(valid, spherical.lon.deg, 0.0) * u.deg,
        np.where(valid, spherical.lat.deg, 0.0) * u.deg,
        frame=coords.frame.replicate_without_data(),
    )
    return SourcePositions(sky=filled, x=None, y=None, valid=valid)


def _from_sky_columns(table, ra_name, dec_name):
    ra, ra_ok = _angle_in_degrees(table, ra_name)
    dec, dec_ok = _angle_in_degrees(table, dec_name)
    valid = ra_ok & dec_ok & (np.abs(dec) <= 90.0)
    sky = SkyCoord(np.where(valid, ra, 0.0) * u.deg, np.where(valid, dec, 0.0) * u.deg, frame="icrs")
    return SourcePositions(sky=sky, x=None, y=None, valid=valid)


def _from_pixels(table, x_name, y_name):
    x, x_ok = _plain_values(table, x_name)
    y, y_ok = _plain_values(table, y_name)
    valid = x_ok & y_ok
    return SourcePositions(sky=None, x=np.where(valid, x, np.nan), y=np.where(valid, y, np.nan), valid=valid)


def _angle_in_degrees(table, name):
    column = table[name]
    unit = getattr(column, "unit", None)
    if unit is not None:
        if not unit.is_equivalent(u.deg):
            msg = f"column {name!r} has unit {unit}, which is not an angle; give degrees or an angle Quantity"
            raise ValueError(msg)
        scale = unit.to(u.deg)
    else:
        scale = 1.0
    values, ok = _plain_values(table, name)
    return values * scale, ok


def _plain_values(table, name):
    """Column values as float64 with NaN for masked entries, and a finite-and-unmasked mask."""
    column = table[name]
    data = getattr(column, "value", column)
    if hasattr(column, "mask") and column.mask is not None and np.any(column.mask):
        data = np.ma.getdata(data)
        mask = np.ma.getmaskarray(column)
    else:
        mask = np.zeros(len(column), dtype=bool)
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as error:
        msg = f"position column {name!r} is not numeric (dtype {np.asarray(data).dtype})"
        raise ValueError(msg) from error
    if values.ndim != 1:
        msg = f"position column {name!r} must be one value per row, got shape {values.shape}"
        raise ValueError(msg)
    ok = np.isfinite(values) & ~mask
    return np.where(ok, values, np.nan), ok
