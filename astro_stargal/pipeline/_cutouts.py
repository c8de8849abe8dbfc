"""Square stamps around sources, with the semantics of ``photutils.utils.CutoutImage``.

`extract_stamps` cuts many stamps at once without a Python object per source.
It follows ``CutoutImage(data, (y, x), shape, mode='partial')`` pixel for pixel:
the stamp's first row and column are ``ceil(y - n/2)`` and ``ceil(x - n/2)``,
and the part that runs off the image is padded, not dropped. The test suite
proves the two identical, edges included.
"""

import numpy as np

__all__ = ["extract_stamps", "stamp_origin"]


def stamp_origin(x, y, stamp_size):
    """Return the integer pixel ``(x0, y0)`` of each stamp's lower-left corner.

    Parameters
    ----------
    x, y : 1D `~numpy.ndarray`
        0-based pixel positions of the source centres (finite).
    stamp_size : int
        Side of the square stamp in pixels.

    Returns
    -------
    x0, y0 : 1D int `~numpy.ndarray`

    Examples
    --------
    >>> stamp_origin(np.array([10.3]), np.array([5.0]), 4)
    (array([9]), array([3]))
    """
    half = stamp_size / 2.0
    return np.ceil(x - half).astype(np.int64), np.ceil(y - half).astype(np.int64)


def extract_stamps(data, x, y, stamp_size, *, mask=None, fill_value=np.nan, out=None):
    """Cut square stamps centred on many sources at once.

    Parameters
    ----------
    data : 2D `~numpy.ndarray`
        The image (memory-mapped arrays are read only where stamps fall).
    x, y : 1D `~numpy.ndarray`
        0-based pixel positions; non-finite entries give all-padding stamps.
    stamp_size : int
        Side of the square stamp in pixels.
    mask : 2D `~numpy.ndarray`, optional
        True (or non-zero) for bad pixels; they are replaced by ``fill_value``.
    fill_value : float, optional
        Value for pixels off the image or masked.
    out : 3D float32 `~numpy.ndarray`, optional
        ``(n_sources, stamp_size, stamp_size)`` array (a view is fine) to cut
        the stamps into, instead of a new one.

    Returns
    -------
    stamps : 3D float32 `~numpy.ndarray`
        Shape ``(n_sources, stamp_size, stamp_size)``.
    on_image : 3D bool `~numpy.ndarray`
        True where the stamp pixel lies on the image.

    Examples
    --------
    >>> image = np.arange(25.0).reshape(5, 5)
    >>> stamps, on_image = extract_stamps(image, np.array([0.0]), np.array([0.0]), 2)
    >>> stamps[0]
    array([[nan, nan],
           [nan,  0.]], dtype=float32)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_sources = len(x)
    ny, nx = data.shape
    finite = np.isfinite(x) & np.isfinite(y)
    x0, y0 = stamp_origin(np.where(finite, x, -stamp_size), np.where(finite, y, -stamp_size), stamp_size)
    inside = finite & (x0 >= 0) & (y0 >= 0) & (x0 + stamp_size <= nx) & (y0 + stamp_size <= ny)

    if out is None:
        out = np.empty((n_sources, stamp_size, stamp_size), dtype=np.float32)
    stamps = out
    on_image = np.zeros((n_sources, stamp_size, stamp_size), dtype=bool)

    # Sources whose stamp lies wholly on the image: one strided gather, no padding.
    if inside.all() and n_sources:
        stamps[...] = _windows(data, stamp_size)[y0, x0]
        on_image[...] = True
    else:
        stamps[~finite] = fill_value
        if inside.any():
            stamps[inside] = _windows(data, stamp_size)[y0[inside], x0[inside]]
            on_image[inside] = True

    # Sources at or beyond an edge: clip the indices, then pad what is off the image.
    edge = finite & ~inside
    if edge.any():
        offsets = np.arange(stamp_size)
        rows = y0[edge, None] + offsets
        cols = x0[edge, None] + offsets
        row_ok = (rows >= 0) & (rows < ny)
        col_ok = (cols >= 0) & (cols < nx)
        gathered = data[np.clip(rows, 0, ny - 1)[:, :, None], np.clip(cols, 0, nx - 1)[:, None, :]]
        edge_on_image = row_ok[:, :, None] & col_ok[:, None, :]
        stamps[edge] = np.where(edge_on_image, gathered, fill_value)
        on_image[edge] = edge_on_image

    if mask is not None:
        # Any truthy mask value is bad; a uint8 view keeps the gather cheap.
        bad = np.asarray(mask, dtype=bool).view(np.uint8)
        masked, _ = extract_stamps(bad, x, y, stamp_size, fill_value=0)
        stamps[masked > 0] = fill_value
    return stamps, on_image


def _windows(data, stamp_size):
    """Every ``stamp_size``-square window of ``data``, as a strided view (no copy)."""
    return np.lib.stride_tricks.sliding_window_view(data, (stamp_size, stamp_size))
