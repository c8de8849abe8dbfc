"""How much int8 storage changes the bundled model's predictions, against its float weights.

The bundled weights are int8 per output channel with float16 scales. Training
keeps the float weights of the best epoch in ``RUN/checkpoint.pt``;
``benchmarks/device_session.sh`` brings them back as float16
(``float16_state.part-*``: join them with ``cat``). This script loads that
state into the bundled network (keeping the bundled calibration and feature
normalisation, which were fitted on the int8 network), classifies a held-out
sky with both, and prints the differences in ``p_star`` and in class, and the
acceptance figures of each.

Usage::

    cat float16_state.part-* > best_state_fp16.safetensors
    python -m benchmarks.quantisation_check best_state_fp16.safetensors test_sky [--weights DIR]
"""

import argparse
import copy
import dataclasses

import numpy as np
from safetensors.torch import load_file

from astro_stargal import load_model

from .common import classify_simulation, model_weights, print_summary, summarise

#: Buffers fitted after training (on the int8 network); the float state holds their initial values.
KEPT_FROM_BUNDLED = ("temperature", "calibration_bias", "feature_mean", "feature_std")


def float_model(int8_model, state_path):
    """The int8 model's network and metadata with the float weights of ``state_path``."""
    state = {
        name: tensor.float() if tensor.is_floating_point() else tensor
        for name, tensor in load_file(state_path).items()
    }
    net = copy.deepcopy(int8_model.net)
    kept = {name: getattr(net, name).clone() for name in KEPT_FROM_BUNDLED}
    net.load_state_dict(state)
    for name, value in kept.items():
        getattr(net, name).copy_(value)
    return dataclasses.replace(int8_model, net=net.eval())


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("state", help="float16 safetensors of the trained float weights")
    parser.add_argument("sky_dir", help="held-out simulator output directory")
    parser.add_argument("--weights", help="the int8 weights directory (default: bundled)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    int8 = load_model(model_weights(args.weights), device=args.device)
    results = {}
    for label, model in (("int8 (shipped)", int8), ("float", float_model(int8, args.state))):
        results[label] = classify_simulation(args.sky_dir, weights=model, device=args.device)
        print_summary(summarise(results[label]), f"{label} on {args.sky_dir}")
    quantised, reference = (np.asarray(table["p_star"]) for table in results.values())
    both = np.isfinite(quantised) & np.isfinite(reference)
    difference = np.abs(quantised[both] - reference[both])
    changed = (quantised[both] >= 0.5) != (reference[both] >= 0.5)
    print(
        f"|p_star(int8) - p_star(float)| over {both.sum()} sources: median {np.median(difference):.2e}, "
        f"99th percentile {np.percentile(difference, 99):.2e}, max {difference.max():.3f}; "
        f"class changed for {changed.sum()} sources ({changed.mean():.3%})"
    )


if __name__ == "__main__":
    main()
