"""Choosing the device a model runs on."""

import torch

__all__ = ["resolve_device"]


def resolve_device(device=None):
    """Return the `torch.device` to run on: CUDA, then Apple MPS, then CPU by default.

    Parameters
    ----------
    device : str or `torch.device`, optional
        An explicit device such as ``'cpu'`` or ``'cuda:0'``.

    Returns
    -------
    device : `torch.device`

    Raises
    ------
    ValueError
        If ``device`` is not a device name, or names CUDA/MPS where none is available.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        msg = f"device={device!r} is not a torch device name (try 'cpu', 'cuda' or 'cuda:0')"
        raise ValueError(msg) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            msg = (
                f"device={str(device)!r} asked for CUDA, but no CUDA GPU is available here; use device='cpu'"
            )
            raise ValueError(msg)
        if device.index is not None and device.index >= torch.cuda.device_count():
            msg = f"device={str(device)!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)"
            raise ValueError(msg)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        msg = "device='mps' asked for Apple MPS, which is not available here; use device='cpu'"
        raise ValueError(msg)
    elif device.type not in ("cpu", "cuda", "mps"):
        msg = f"device={str(device)!r} is not supported; use 'cpu', 'cuda' or 'mps'"
        raise ValueError(msg)
    return device
