"""classify_tiles on dask.distributed: same rows as the local path, failures kept apart, one model per worker."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table, vstack

from astro_stargal.exceptions import StarGalaxyWarning
from astro_stargal.flags import SourceFlag

distributed = pytest.importorskip("distributed")

from astro_stargal.distributed import ModelPlugin, classify_tiles  # noqa: E402

#: Sources of the two tiles: some well inside, one off the image.
TILE_SOURCES = {
    "a": ((30.0, 40.0, 4000.0), (80.0, 70.0, 2000.0, 2.5), (200.0, 10.0, 1000.0)),
    "b": ((50.5, 60.2, 3000.0), (20.0, 90.0, 1500.0)),
}


@pytest.fixture(scope="module")
def client():
    """One in-process worker with one thread (fast to start; tasks run in this process)."""
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def tile_fields(make_field):
    return {tile: make_field((96, 112), sources, seed=ord(tile)) for tile, sources in TILE_SOURCES.items()}


@pytest.fixture(scope="module")
def tile_paths(tmp_path_factory, tile_fields):
    """Tile -> band -> FITS path."""
    directory = tmp_path_factory.mktemp("tiles")
    paths = {}
    for tile, field in tile_fields.items():
        paths[tile] = {}
        for band, hdu in field.images().items():
            path = directory / f"tile{tile}_{band}.fits"
            hdu.writeto(path)
            paths[tile][band] = str(path)
    return paths


def _tile_table(field, tile):
    table = field.table()
    table["tile"] = tile
    return table


def test_dask_path_gives_the_local_rows_and_columns(
    client, classify, field_psf, model_dir, tile_fields, tile_paths
):
    tiles = {tile: (_tile_table(field, tile), tile_paths[tile]) for tile, field in tile_fields.items()}
    result, failures = classify_tiles(tiles, client=client, weights=model_dir, device="cpu", psf=field_psf)
    assert failures == []
    assert list(result) == ["a", "b"]
    for tile, (table, images) in tiles.items():
        expected = classify(table, images)
        assert result[tile].colnames == expected.colnames
        np.testing.assert_array_equal(result[tile]["id"], expected["id"])
        np.testing.assert_array_equal(result[tile]["p_star"], expected["p_star"])
        np.testing.assert_array_equal(result[tile]["sg_flags"], expected["sg_flags"])
        assert list(result[tile]["sg_class"].filled("")) == list(expected["sg_class"].filled(""))
        same = ("SGVERSN", "SGMODEL", "SGSHA256", "SGBANDS", "SGIMAGES", "SGTHRESH", "SGDEVICE")
        assert {key: result[tile].meta[key] for key in same} == {key: expected.meta[key] for key in same}


def test_big_table_comes_back_in_its_original_row_order(
    client, classify, field_psf, model_dir, tile_fields, tile_paths
):
    parts = {tile: _tile_table(field, tile) for tile, field in tile_fields.items()}
    big = vstack(list(parts.values()))
    big["row"] = np.arange(len(big))
    shuffled = big[np.random.default_rng(5).permutation(len(big))]
    result, failures = classify_tiles(
        (shuffled, tile_paths), client=client, weights=model_dir, device="cpu", psf=field_psf
    )
    assert failures == []
    np.testing.assert_array_equal(result["row"], shuffled["row"])
    expected = vstack(
        [classify(parts[tile], tile_paths[tile]) for tile in parts], metadata_conflicts="silent"
    )
    by_row = np.argsort(result["row"])
    # Shuffled, a tile's rows reach the network in another order, and CPU kernels round a row
    # differently by its place in the batch (a few float32 ulps), so equal only to rounding.
    np.testing.assert_allclose(result["p_star"][by_row], expected["p_star"], rtol=1e-6)
    np.testing.assert_array_equal(result["sg_flags"][by_row], expected["sg_flags"])
    # The provenance names every tile's images (issue 15: a catalog traced months later).
    assert result.meta["SGMODEL"] == expected.meta["SGMODEL"]
    for tile, images in tile_paths.items():
        assert f"tile {tile}: " in result.meta["SGIMAGES"]
        assert str(Path(images["r"]).resolve()) in result.meta["SGIMAGES"]


def test_failed_tile_is_reported_and_the_others_kept(client, model_dir, tile_fields, tile_paths):
    broken = {band: path.replace("tileb_", "missing_") for band, path in tile_paths["b"].items()}
    big = vstack([_tile_table(field, tile) for tile, field in tile_fields.items()])
    with pytest.warns(StarGalaxyWarning, match=r"1 of 2 tile\(s\) failed.*'b'.*FileNotFoundError"):
        result, failures = classify_tiles(
            (big, {"a": tile_paths["a"], "b": broken}), client=client, weights=model_dir, device="cpu"
        )
    assert len(result) == len(big)
    assert [failure.tile for failure in failures] == ["b"]
    assert isinstance(failures[0].error, FileNotFoundError)
    assert failures[0].n_rows == len(TILE_SOURCES["b"])
    in_b = result["tile"] == "b"
    assert np.isnan(result["p_star"][in_b]).all()
    assert (result["sg_flags"][in_b] == SourceFlag.TILE_FAILED).all()
    assert result["sg_class"].mask[in_b].all()
    assert np.isfinite(result["p_star"][~in_b][:2]).all()
    assert not (result["sg_flags"][~in_b] & SourceFlag.TILE_FAILED).any()


def test_model_is_loaded_once_per_worker(client, model_dir, tile_fields, tile_paths):
    tiles = {
        f"{tile}{k}": (_tile_table(field, tile), tile_paths[tile])
        for tile, field in tile_fields.items()
        for k in range(3)
    }
    classify_tiles(tiles, client=client, weights=model_dir, device="cpu")
    classify_tiles(tiles, client=client, weights=model_dir, device="cpu")
    name = ModelPlugin(model_dir, "cpu").name
    counts = client.run(lambda dask_worker: dask_worker.plugins[name].load_count)
    assert list(counts.values()) == [1]


def test_local_cluster_is_made_and_closed_when_no_client_is_given(model_dir, tile_fields, tile_paths):
    tiles = {"a": (_tile_table(tile_fields["a"], "a"), tile_paths["a"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        result, failures = classify_tiles(tiles, weights=model_dir, device="cpu", n_workers=1)
    assert failures == []
    assert len(result["a"]) == len(TILE_SOURCES["a"])


@pytest.mark.parametrize(
    ("tiles", "message"),
    [
        ([1, 2], "tiles must be a mapping"),
        ({"a": "not a pair"}, "tile 'a': expected a pair"),
        ((Table({"ra": [1.0]}), {}), "tile column 'tile' not in the table"),
        ((Table({"ra": [1.0], "tile": ["z"]}), {"a": {}}), r"no images for tile\(s\) \['z'\]"),
    ],
)
def test_malformed_tiles_are_refused_naming_the_problem(client, tiles, message):
    with pytest.raises((TypeError, ValueError), match=message):
        classify_tiles(tiles, client=client)


def test_command_line_classifies_a_tiled_catalog(client, tmp_path, model_dir, tile_fields, tile_paths, bands):
    from astro_stargal.cli import main

    big = vstack([_tile_table(field, tile) for tile, field in tile_fields.items()])
    big.write(tmp_path / "big.ecsv")
    pattern = str(Path(tile_paths["a"][bands[0]]).parent / "tile{tile}_{band}.fits")
    status = main(
        [
            "classify-tiles",
            "--tiles-table",
            str(tmp_path / "big.ecsv"),
            "--images",
            pattern,
            "--bands",
            ",".join(bands),
            "-o",
            str(tmp_path / "out.ecsv"),
            "--scheduler",
            client.scheduler.address,
            "--weights",
            str(model_dir),
            "--device",
            "cpu",
        ]
    )
    assert status == 0
    out = Table.read(tmp_path / "out.ecsv")
    np.testing.assert_array_equal(out["id"], big["id"])
    assert np.isfinite(out["p_star"][:2]).all()
