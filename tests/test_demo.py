"""Specifications of astro_stargal.demo, with a small random model instead of the trained one."""

import importlib.resources

import pytest
from astropy.table import Table

from astro_stargal.demo import DEMO_IMAGES, DEMO_TRUTH, run_demo
from astro_stargal.instrument import band_order
from astro_stargal.models import StarGalaxyNet, save_weights
from astro_stargal.pipeline import FEATURE_NAMES

pytest.importorskip("matplotlib").use("Agg")

DATA = importlib.resources.files("astro_stargal.data")
pytestmark = pytest.mark.skipif(
    not (DATA.joinpath(DEMO_IMAGES).is_file() and DATA.joinpath(DEMO_TRUTH).is_file()),
    reason="bundled demo data (astro_stargal/data/demo_field.fits, demo_truth.ecsv) not generated yet",
)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    net = StarGalaxyNet(7, len(FEATURE_NAMES), backbone="resnet18")
    metadata = {
        "name": "test",
        "bands": list(band_order()),
        "stamp_size": 32,
        "feature_names": list(FEATURE_NAMES),
    }
    return save_weights(net, tmp_path_factory.mktemp("weights"), metadata=metadata)


def test_run_demo_writes_table_figure_and_summary(tmp_path, random_weights):
    table_path, figure_path, summary = run_demo(tmp_path / "out", device="cpu", weights=random_weights)
    assert table_path.name == "demo_classified.ecsv" and figure_path.name == "demo_field.png"
    assert figure_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    classified = Table.read(table_path)
    truth = Table.read(DATA.joinpath(DEMO_TRUTH))
    assert len(classified) == len(truth)
    assert {"p_star", "sg_class", "sg_flags", "label"} <= set(classified.colnames)
    assert f"{len(truth)} sources" in summary and "accuracy" in summary


def test_cli_demo_passes_through(tmp_path, random_weights, monkeypatch, capsys):
    from astro_stargal import cli, demo

    original = demo.run_demo
    monkeypatch.setattr(
        demo, "run_demo", lambda path, device=None: original(path, device="cpu", weights=random_weights)
    )
    assert cli.main(["demo", "-o", str(tmp_path)]) == 0
    assert "demo_field.png" in capsys.readouterr().out
