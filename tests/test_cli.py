"""The ``astro-stargal`` command line: classify round trips, info, and user errors (exit status 2)."""

from importlib.resources import files

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from astro_stargal import StarGalaxyWarning
from astro_stargal.cli import main

CLI_BANDS = ("g", "r", "i")


@pytest.fixture
def inputs(field, tmp_path):
    """A catalog (ECSV, one source off the images) and one FITS file per band."""
    table = field.table()
    table["ra"][3] += 1.0
    catalog = tmp_path / "catalog.ecsv"
    table.write(catalog)
    image_options = []
    for band in CLI_BANDS:
        path = tmp_path / f"{band}.fits"
        fits.HDUList([fits.PrimaryHDU(field.data[band], field.header())]).writeto(path)
        image_options += ["--image", f"{band}={path}"]
    return catalog, image_options


def classify_command(inputs, model_dir, output, *extra):
    catalog, image_options = inputs
    return [
        "classify",
        str(catalog),
        *image_options,
        "-o",
        str(output),
        "--weights",
        str(model_dir),
        "--device",
        "cpu",
        *extra,
    ]


@pytest.mark.parametrize("suffix", [".fits", ".ecsv", ".vot", ".xml"])
def test_classify_round_trip_keeps_rows_units_and_descriptions(inputs, model_dir, tmp_path, capsys, suffix):
    output = tmp_path / f"classified{suffix}"

    status = main(classify_command(inputs, model_dir, output))

    assert status == 0
    assert "classified 4 sources" in capsys.readouterr().out
    table = Table.read(inputs[0])
    result = Table.read(output, format="votable" if suffix in (".vot", ".xml") else None)
    assert len(result) == len(table)
    np.testing.assert_array_equal(result["id"], table["id"])
    assert result["ra"].unit == "deg"
    assert result["ra"].description == "Right ascension (ICRS)"
    assert "probability that the source is a star" in result["p_star"].description
    assert "OFF_IMAGE" in result["sg_flags"].description
    p_star = np.ma.filled(np.ma.asarray(result["p_star"], dtype=float), np.nan)
    assert np.isfinite(p_star[:3]).all() and np.isnan(p_star[3])
    # BAND_MISSING (3 of 7 bands given) and PSF_UNMEASURED (4 sources hold too few stars to measure
    # the PSF, and none was given) for the sources on the images; OFF_IMAGE for the last.
    assert list(result["sg_flags"]) == [8 | 4096] * 3 + [1]


def test_classify_output_matches_the_python_api(inputs, model_dir, tmp_path, classify, field):
    output = tmp_path / "classified.ecsv"
    assert main(classify_command(inputs, model_dir, output)) == 0
    expected = classify(Table.read(inputs[0]), field.images(CLI_BANDS))
    np.testing.assert_array_equal(Table.read(output)["p_star"], expected["p_star"])


def test_existing_output_needs_overwrite(inputs, model_dir, tmp_path, capsys):
    output = tmp_path / "classified.ecsv"
    output.write_text("precious")

    assert main(classify_command(inputs, model_dir, output)) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert output.read_text() == "precious"
    assert main(classify_command(inputs, model_dir, output, "--overwrite")) == 0


@pytest.mark.filterwarnings("ignore:model 'csst-resnet50-bilstm'")  # until the bundled weights are trained
def test_info_runs(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "astro_stargal" in out
    assert "default device" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda args, tmp: [*args[:-4], "--image", "Q=q.fits", *args[-4:]],
            "unknown band name in images 'Q'",
        ),
        (lambda args, tmp: [*args, "--image", f"G={tmp / 'g.fits'}"], "images names band 'g' twice"),
        (lambda args, tmp: [*args, "--image", f"g={tmp / 'g.fits'}"], "a band is given twice in --image"),
        (lambda args, tmp: [*args, "--image", f"z={tmp / 'missing.fits'}"], "does not exist"),
        (lambda args, tmp: [a.replace("catalog.ecsv", "missing.ecsv") for a in args], "No such file"),
        (
            lambda args, tmp: [a.replace("out.ecsv", "out.unknown") for a in args],
            "cannot tell the table format",
        ),
        (lambda args, tmp: [a.replace("out.ecsv", "nowhere/out.ecsv") for a in args], "does not exist"),
        (
            lambda args, tmp: [*args, "--threshold", "2"],
            "threshold must be a number strictly between 0 and 1",
        ),
        (lambda args, tmp: [*args, "--batch-size", "0"], "batch_size must be a positive integer"),
        (lambda args, tmp: [*args[:-2], "--device", "tpu9"], "device="),
    ],
    ids=[
        "unknown_band",
        "band_twice_in_two_spellings",
        "duplicated_band",
        "missing_image",
        "missing_catalog",
        "unknown_output_format",
        "missing_output_folder",
        "bad_threshold",
        "bad_batch_size",
        "bad_device",
    ],
)
def test_user_errors_exit_with_status_2_and_a_message(inputs, model_dir, tmp_path, capsys, change, message):
    args = change(classify_command(inputs, model_dir, tmp_path / "out.ecsv"), tmp_path)

    status = main(args)

    err = capsys.readouterr().err
    assert status == 2
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("astro-stargal classify: error:")


def test_missing_weights_exit_with_status_2(inputs, tmp_path, capsys):
    args = classify_command(inputs, tmp_path / "no_weights", tmp_path / "out.ecsv")
    assert main(args) == 2
    assert "no_weights" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--image", "g"], "--image expects BAND=PATH"),
        (["--zeropoint", "g=abc"], "--zeropoint expects BAND=ZP"),
    ],
)
def test_malformed_band_option_is_an_argparse_usage_error(inputs, tmp_path, capsys, option, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", str(inputs[0]), *option, "-o", str(tmp_path / "out.ecsv")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_band_of_a_multi_band_file_without_ext_is_read_from_its_own_extension(model_dir, tmp_path):
    """Issue 15: ``--image r=demo_field.fits`` once read the file's first image (NUV) as r."""
    data = files("astro_stargal.data")
    demo = str(data / "demo_field.fits")
    catalog = tmp_path / "demo.ecsv"
    Table.read(str(data / "demo_truth.ecsv"))[:20].write(catalog)

    def classify_r(image, *extra):
        output = tmp_path / f"out{len(list(tmp_path.iterdir()))}.ecsv"
        command = ["classify", str(catalog), "--image", image, "-o", str(output)]
        assert main([*command, "--weights", str(model_dir), "--device", "cpu", *extra]) == 0
        return Table.read(output)["p_star"]

    by_header = classify_r(f"r={demo}")
    np.testing.assert_array_equal(by_header, classify_r(f"r={demo}[r]"))
    np.testing.assert_array_equal(by_header, classify_r(f"R={demo}"))
    # Ignoring the headers gives back the old, wrong reading: the first image, NUV.
    with pytest.warns(StarGalaxyWarning, match=r"\['r'\] name other bands.*has BAND = 'NUV'"):
        nuv_as_r = classify_r(f"r={demo}[NUV]")  # an explicit extension wins over its header
    np.testing.assert_array_equal(classify_r(f"r={demo}", "--ignore-header-bands"), nuv_as_r)
    assert not np.array_equal(by_header, nuv_as_r)


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "classify" in capsys.readouterr().out
