"""Augmentation of training batches: small transforms with one call signature.

Each transform is a frozen dataclass whose fields are its parameters. It is
called as ``transform(stamps, catalog, generator)`` on one batch and returns
the new ``(stamps, catalog)``:

- ``stamps``: float tensor ``(n_sources, 2 * n_bands, n, n)``, the normalised
  pixels of each band followed by one validity channel per band (as
  `~astro_stargal.pipeline.prepare_inputs` makes them);
- ``catalog``: float tensor ``(n_sources, n_bands, n_features + 1)`` whose last
  column is 1 where the band is present;
- ``generator``: the `torch.Generator` of the epoch, the only source of
  randomness, so that a resumed run draws exactly what an uninterrupted one does.

`TrainConfig.augmentations <astro_stargal.training.TrainConfig>` holds the list
that is applied, in order, to every training batch; an ablation passes another
list. A transform describes itself as a dict (``to_dict``) and is rebuilt from
it (`Augmentation.from_dict`), which is how the list is recorded in the
weights' metadata. A new transform is one more subclass in this module: a
frozen dataclass with its parameters as fields, a ``__call__`` and a
docstring.
"""

import dataclasses
import math
import numbers

import torch

from ..pipeline import IMAGE_SOFTENING

__all__ = [
    "DEFAULT_AUGMENTATIONS",
    "Augmentation",
    "BandDropout",
    "RotateFlip",
    "SkyNoise",
    "standard_augmentations",
]

#: Transform class name -> class, filled as subclasses are defined (see `Augmentation.from_dict`).
_TRANSFORMS = {}


class Augmentation:
    """A random transform of a training batch, described by its parameters.

    Subclasses are frozen dataclasses whose fields are their parameters (so
    that two transforms with the same parameters are equal), and define
    ``__call__(stamps, catalog, generator) -> (stamps, catalog)``. They are
    registered under their class name as they are defined, so that
    `from_dict` rebuilds any of them.

    Examples
    --------
    >>> SkyNoise(max_sigma=0.3).to_dict()
    {'name': 'SkyNoise', 'max_sigma': 0.3}
    >>> Augmentation.from_dict({"name": "BandDropout", "probability": 0.2})
    BandDropout(probability=0.2)
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _TRANSFORMS[cls.__name__] = cls

    def __call__(self, stamps, catalog, generator):
        raise NotImplementedError

    def to_dict(self):
        """The transform as a JSON-able dict: its class name and its parameters."""
        parameters = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {"name": type(self).__name__, **parameters}

    @staticmethod
    def from_dict(description):
        """Rebuild a transform from its `to_dict` description."""
        parameters = dict(description)
        name = parameters.pop("name", None)
        if name not in _TRANSFORMS:
            msg = f"unknown augmentation {name!r}; known ones are {sorted(_TRANSFORMS)}"
            raise ValueError(msg)
        try:
            return _TRANSFORMS[name](**parameters)
        except TypeError as error:
            msg = f"augmentation {name!r}: {error}"
            raise ValueError(msg) from error


def _validate_number(transform, name, value, upper=math.inf):
    """Refuse a parameter that is not a finite number in [0, ``upper``], naming the transform and parameter."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not 0 <= value <= upper
    ):
        limits = "a finite number >= 0" if upper == math.inf else f"a number between 0 and {upper}"
        msg = f"{type(transform).__name__}: {name} must be {limits}, got {value!r}"
        raise ValueError(msg)
    object.__setattr__(transform, name, float(value))


@dataclasses.dataclass(frozen=True)
class RotateFlip(Augmentation):
    """One of the eight rotations and flips of the square, drawn for each stamp.

    The sky has no preferred orientation and the PSF model is close to
    symmetric, so the eight orientations of a source are equally likely.

    Parameters
    ----------
    none
        Every orientation is drawn with the same chance; there is nothing to set.

    Examples
    --------
    >>> stamps, catalog = torch.arange(32.0).reshape(1, 2, 4, 4), torch.ones(1, 1, 7)
    >>> rotated, _ = RotateFlip()(stamps, catalog, torch.Generator().manual_seed(1))
    >>> bool(torch.equal(rotated.flatten().sort().values, stamps.flatten().sort().values))
    True
    """

    def __call__(self, stamps, catalog, generator):
        choice = torch.randint(0, 8, (len(stamps),), generator=generator, device=stamps.device)
        result = stamps.clone()
        for transform in range(1, 8):
            rows = choice == transform
            if rows.any():
                transformed = torch.rot90(stamps[rows], k=transform % 4, dims=(2, 3))
                result[rows] = torch.flip(transformed, dims=(3,)) if transform >= 4 else transformed
        return result, catalog


@dataclasses.dataclass(frozen=True)
class SkyNoise(Augmentation):
    """A new Gaussian sky-noise realisation on top of the old, of up to ``max_sigma`` sky sigmas.

    The level is drawn uniformly in ``[0, max_sigma)`` for each stamp and
    added in linear units (before the asinh stretch), only where the band has
    data.

    Parameters
    ----------
    max_sigma : float
        Largest extra noise, in units of the sky sigma (0 adds none).

    Examples
    --------
    >>> stamps, catalog = torch.zeros(2, 2, 8, 8), torch.ones(2, 1, 7)
    >>> stamps[:, 1] = 1.0  # the band is valid everywhere
    >>> noisy, _ = SkyNoise(max_sigma=0.5)(stamps, catalog, torch.Generator().manual_seed(0))
    >>> bool(noisy[:, 0].std() > 0), bool((noisy[:, 1] == 1).all())
    (True, True)
    """

    max_sigma: float = 0.5

    def __post_init__(self):
        _validate_number(self, "max_sigma", self.max_sigma)

    def __call__(self, stamps, catalog, generator):
        n_bands = catalog.shape[1]
        pixels, valid = stamps[:, :n_bands], stamps[:, n_bands:]
        level = self.max_sigma * torch.rand((len(stamps), 1, 1, 1), generator=generator, device=stamps.device)
        noise = torch.randn(pixels.shape, generator=generator, device=stamps.device) * level
        linear = torch.sinh(pixels) + noise / IMAGE_SOFTENING
        return torch.cat([torch.asinh(linear) * valid, valid], dim=1), catalog


@dataclasses.dataclass(frozen=True)
class BandDropout(Augmentation):
    """Hide each band of each source with ``probability``, always keeping one present band.

    A hidden band loses its pixels, its validity channel and its catalog
    row, exactly as a band that was never observed, so the model learns to
    work with any subset of bands.

    Parameters
    ----------
    probability : float
        Chance of hiding each band of each source (between 0 and 1; 0 draws nothing).

    Examples
    --------
    >>> stamps, catalog = torch.ones(1000, 4, 8, 8), torch.ones(1000, 2, 7)
    >>> _, dropped = BandDropout(probability=0.3)(stamps, catalog, torch.Generator().manual_seed(0))
    >>> bool((dropped[:, :, -1].sum(dim=1) >= 1).all())  # one band always stays
    True
    """

    probability: float = 0.15

    def __post_init__(self):
        _validate_number(self, "probability", self.probability, upper=1)

    def __call__(self, stamps, catalog, generator):
        if self.probability == 0:
            return stamps, catalog
        present = catalog[:, :, -1] > 0
        drawn = torch.rand(present.shape, generator=generator, device=present.device)
        dropped = (drawn < self.probability) & present
        emptied = (present & ~dropped).sum(dim=1) == 0
        dropped[emptied] = False
        keep = (~dropped).to(stamps.dtype)
        stamps = stamps * torch.cat([keep, keep], dim=1)[:, :, None, None]
        catalog = catalog * keep[:, :, None]
        return stamps, catalog


def standard_augmentations(*, augment=True, band_dropout=0.15):
    """The standard augmentation list, with its two switches of the command line.

    Parameters
    ----------
    augment : bool, optional
        Include `RotateFlip` and `SkyNoise` (``max_sigma=0.5``).
    band_dropout : float, optional
        Probability of `BandDropout` (0 leaves it out).

    Returns
    -------
    augmentations : tuple of `Augmentation`

    Examples
    --------
    >>> standard_augmentations(augment=False, band_dropout=0.3)
    (BandDropout(probability=0.3),)
    """
    if not isinstance(augment, bool):
        msg = f"augment must be True or False, got {augment!r}"
        raise ValueError(msg)
    orientations_and_noise = (RotateFlip(), SkyNoise(max_sigma=0.5)) if augment else ()
    if band_dropout == 0:
        return orientations_and_noise
    return (*orientations_and_noise, BandDropout(probability=band_dropout))


#: What `train` applies unless told otherwise: orientations, extra noise and band dropout.
DEFAULT_AUGMENTATIONS = standard_augmentations()
