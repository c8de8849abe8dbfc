"""The fusion network of Liu, Ling, Zhang & Han (2026): ResNet image branch + BiLSTM catalog branch.

Image branch
    A torchvision ResNet (ResNet-50 for the bundled model) whose first
    convolution takes ``2 * n_bands`` channels: the normalised stamp of each
    band and its validity mask (0 where a pixel is off the image, bad, or the
    band is missing). Its 2048 pooled features are projected to `IMAGE_EMBEDDING`.
    ``backbone='compact'`` is a small plain network for CPUs instead
    (`CompactBackbone`: four 3x3 convolutions, two of them with stride 2,
    about 3 million multiply-adds per source on 16-pixel stamps against
    about 90 million for ResNet-50 on 32-pixel ones).
Catalog branch
    A two-layer bidirectional LSTM reading the bands in wavelength order; each
    step is that band's features, standardised with the training set's mean and
    standard deviation (stored in the weights), plus a present/missing marker.
    Missing steps are zeroed. The final forward and backward states are joined.
Fusion
    The two vectors are concatenated and classified by a small MLP into one
    logit (star versus galaxy). ``p_star = sigmoid(logit / temperature + bias)``
    (Platt-style calibration), with the temperature and bias fitted on
    validation data after training: training weights the two classes equally,
    and the calibration brings ``p_star`` back to the validation set's class mix.

``branches`` selects ``('image', 'catalog')`` (the fused model) or one branch
alone, for the paper's ablation.
"""

import torch
import torchvision
from torch import nn

__all__ = ["BACKBONES", "CompactBackbone", "StarGalaxyNet"]

#: torchvision builders allowed as the image backbone.
RESNETS = {"resnet50": torchvision.models.resnet50, "resnet18": torchvision.models.resnet18}

#: Every image backbone ``StarGalaxyNet`` can build, and the smallest stamp (pixels) each accepts.
BACKBONES = {"resnet50": 16, "resnet18": 16, "compact": 8}

IMAGE_EMBEDDING = 256
FUSION_HIDDEN = 256


class CompactBackbone(nn.Sequential):
    """A small plain convolutional network for stamps of 8 to a few tens of pixels.

    Four 3x3 convolutions, each followed by batch normalisation and a ReLU:
    ``channels`` at full resolution, then stride 2, a second convolution at
    half resolution, and stride 2 again; the result is average-pooled to a
    2 x 2 grid (so the centre and the outskirts of a source are not merged)
    and flattened to ``4 * widths[-1]`` features.

    Parameters
    ----------
    in_channels : int
        Input channels (pixels and validity of each band).
    widths : tuple of int, optional
        Output channels of the four convolutions.

    Examples
    --------
    >>> backbone = CompactBackbone(14)
    >>> tuple(backbone(torch.zeros(2, 14, 16, 16)).shape), backbone.out_features
    ((2, 256), 256)
    """

    def __init__(self, in_channels, widths=(32, 48, 48, 64)):
        layers = []
        strides = (1, 2, 1, 2)
        for width, stride in zip(widths, strides, strict=True):
            layers += [
                nn.Conv2d(in_channels, width, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            in_channels = width
        layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten()]
        super().__init__(*layers)
        self.out_features = 4 * widths[-1]


class StarGalaxyNet(nn.Module):
    """Star-galaxy fusion network.

    Parameters
    ----------
    n_bands : int
        Number of bands (image channels are twice this).
    n_features : int
        Catalog features per band (the present marker is added on top).
    backbone : {'resnet50', 'resnet18', 'compact'}
        Image branch: a torchvision ResNet, or `CompactBackbone` (for CPUs).
    lstm_hidden : int
        Hidden units per direction of the BiLSTM.
    branches : tuple of str
        ``('image', 'catalog')``, ``('image',)`` or ``('catalog',)``.

    Examples
    --------
    >>> net = StarGalaxyNet(7, 6, backbone="resnet18")
    >>> logits = net(torch.zeros(2, 14, 32, 32), torch.zeros(2, 7, 7))
    >>> tuple(logits.shape)
    (2,)
    """

    def __init__(
        self,
        n_bands,
        n_features,
        *,
        backbone="resnet50",
        lstm_hidden=64,
        branches=("image", "catalog"),
    ):
        super().__init__()
        branches = tuple(branches)
        if not branches or set(branches) - {"image", "catalog"}:
            msg = f"branches must be a non-empty subset of ('image', 'catalog'), got {branches!r}"
            raise ValueError(msg)
        if backbone not in BACKBONES:
            msg = f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}"
            raise ValueError(msg)
        self.n_bands = n_bands
        self.n_features = n_features
        self.branches = branches
        self.backbone = backbone
        self.lstm_hidden = lstm_hidden
        fused_width = 0

        if "image" in branches:
            self.image_branch, width = _image_branch(backbone, 2 * n_bands)
            self.image_projection = nn.Sequential(nn.Linear(width, IMAGE_EMBEDDING), nn.ReLU(inplace=True))
            fused_width += IMAGE_EMBEDDING

        if "catalog" in branches:
            self.catalog_branch = nn.LSTM(
                input_size=n_features + 1,
                hidden_size=lstm_hidden,
                num_layers=2,
                batch_first=True,
                bidirectional=True,
            )
            fused_width += 2 * lstm_hidden

        self.classifier = nn.Sequential(
            nn.Linear(fused_width, FUSION_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(FUSION_HIDDEN, 1),
        )
        self.register_buffer("feature_mean", torch.zeros(n_bands, n_features))
        self.register_buffer("feature_std", torch.ones(n_bands, n_features))
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("calibration_bias", torch.zeros(()))

    def forward(self, stamps, catalog):
        """Return one uncalibrated logit per source (positive means star)."""
        parts = []
        if "image" in self.branches:
            parts.append(self.image_projection(self.image_branch(stamps)))
        if "catalog" in self.branches:
            present = catalog[..., -1:]
            features = (catalog[..., :-1] - self.feature_mean) / self.feature_std
            steps = torch.cat([features * present, present], dim=-1)
            _, (hidden, _) = self.catalog_branch(steps)
            parts.append(torch.cat([hidden[-2], hidden[-1]], dim=1))
        return self.classifier(torch.cat(parts, dim=1)).squeeze(1)

    def predict_proba(self, stamps, catalog):
        """Return the calibrated star probability ``sigmoid(logit / temperature + bias)``."""
        logits = self.forward(stamps, catalog).float()
        return torch.sigmoid(logits / self.temperature + self.calibration_bias)


def _image_branch(backbone, in_channels):
    """The image backbone and the width of its pooled output."""
    if backbone == "compact":
        compact = CompactBackbone(in_channels)
        return compact, compact.out_features
    resnet = RESNETS[backbone](weights=None)
    resnet.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    width = resnet.fc.in_features
    resnet.fc = nn.Identity()
    return resnet, width
