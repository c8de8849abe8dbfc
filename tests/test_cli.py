"""The ``astro-stargal`` command line: classify round trips, info, and user errors (exit status 2)."""

import inspect
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from astro_stargal import StarGalaxyWarning, classify_sources
from astro_stargal.cli import main
from astro_stargal.cli._common import CLASSIFY_OPTIONS, command_line_message

ROOT = Path(__file__).resolve().parent.parent

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
            "unknown band name in --image 'Q'",
        ),
        (lambda args, tmp: [*args, "--image", f"G={tmp / 'g.fits'}"], "--image names band 'g' twice"),
        (lambda args, tmp: [*args, "--image", f"g={tmp / 'g.fits'}"], "a band is given twice in --image"),
        (lambda args, tmp: [*args, "--image", f"z={tmp / 'missing.fits'}"], "does not exist"),
        (lambda args, tmp: [a.replace("catalog.ecsv", "missing.ecsv") for a in args], "No such file"),
        (
            lambda args, tmp: [a.replace("out.ecsv", "out.unknown") for a in args],
            "cannot tell the table format",
        ),
        (lambda args, tmp: [a.replace("out.ecsv", "nowhere/out.ecsv") for a in args], "does not exist"),
        (lambda args, tmp: [*args[:-2], "--device", "tpu9"], "--device tpu9 is not a torch device name"),
    ],
    ids=[
        "unknown_band",
        "band_twice_in_two_spellings",
        "duplicated_band",
        "missing_image",
        "missing_catalog",
        "unknown_output_format",
        "missing_output_folder",
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
        (["--threshold", "2"], "argument --threshold: expects a number strictly between 0 and 1, got '2'"),
        (["--batch-size", "0"], "argument --batch-size: expects a positive integer, got '0'"),
        (["--chunk-size", "many"], "argument --chunk-size: expects a positive integer, got 'many'"),
        (["--workers", "-1"], "argument --workers: expects a non-negative integer, got '-1'"),
        (["--position-columns", "a,b,c"], "--position-columns expects RA,DEC"),
    ],
)
def test_malformed_option_is_an_argparse_usage_error(inputs, tmp_path, capsys, option, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", str(inputs[0]), "--image", "g=g.fits", *option, "-o", str(tmp_path / "out.ecsv")])
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


def test_every_option_of_classify_sources_has_a_command_line_option(capsys):
    """Issue 15: ``position_columns=`` had no option, so its error message could not be followed."""
    keywords = [
        parameter.name
        for parameter in inspect.signature(classify_sources).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    spelled = {keyword.partition("=")[0] for keyword in CLASSIFY_OPTIONS}
    assert set(keywords) <= spelled, "add the option to the classify subcommand and to CLASSIFY_OPTIONS"
    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    help_text = capsys.readouterr().out
    for option in CLASSIFY_OPTIONS.values():
        assert option in help_text, option


def test_a_table_with_output_columns_asks_for_the_overwrite_option(inputs, model_dir, tmp_path, capsys):
    catalog, _ = inputs
    table = Table.read(catalog)
    table["p_star"] = 0.5
    table.write(catalog, overwrite=True)

    assert main(classify_command(inputs, model_dir, tmp_path / "out.ecsv")) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite to replace them" in err and "overwrite=True" not in err


def test_unnamed_position_columns_ask_for_the_option_which_then_works(inputs, model_dir, tmp_path, capsys):
    catalog, _ = inputs
    table = Table.read(catalog)
    table.rename_columns(["ra", "dec"], ["lon_deg", "lat_deg"])
    table.write(catalog, overwrite=True)
    output = tmp_path / "out.ecsv"

    assert main(classify_command(inputs, model_dir, output)) == 2
    err = capsys.readouterr().err
    assert "name them with --position-columns" in err and "position_columns" not in err

    assert main(classify_command(inputs, model_dir, output, "--position-columns", "lon_deg,lat_deg")) == 0
    assert np.isfinite(Table.read(output)["p_star"][:3]).all()


def test_speed_options_reach_classify_sources_and_do_not_change_the_result(inputs, model_dir, tmp_path):
    default, tuned = tmp_path / "default.ecsv", tmp_path / "tuned.ecsv"
    assert main(classify_command(inputs, model_dir, default)) == 0
    options = ["--batch-size", "2", "--chunk-size", "3", "--workers", "0", "--threads", "1", "--no-progress"]
    assert main(classify_command(inputs, model_dir, tuned, *options)) == 0
    np.testing.assert_array_equal(Table.read(tuned)["p_star"], Table.read(default)["p_star"])


@pytest.mark.parametrize(
    ("library_message", "command_line"),
    [
        (
            "the table already has column(s) ['p_star']; pass overwrite=True to replace them",
            "pass --overwrite to",
        ),
        (
            "device='mps' asked for Apple MPS, which is not available here; use device='cpu'",
            "use --device cpu",
        ),
        ("device='cuda:3' does not exist", "--device cuda:3 does not exist"),
        (
            "choose one with position_columns='...' or position_columns=('ra', 'dec')",
            "--position-columns ra,dec",
        ),
        ("band 'r': no zero point in the header; pass zeropoints={'r': ...}", "pass --zeropoint r=..."),
        ("batch_size must be a positive integer, got 0", "--batch-size must be"),
        ("weights='nope' is neither an existing path nor a registered model", "--model nope is neither"),
        ("if the headers are wrong, pass header_bands=False", "pass --ignore-header-bands"),
        ("unknown band name in zeropoints 'Q'", "unknown band name in --zeropoint 'Q'"),
    ],
)
def test_library_messages_name_the_command_line_options(library_message, command_line):
    message = command_line_message(library_message, CLASSIFY_OPTIONS)
    assert command_line in message
    assert "=True" not in message and "=False" not in message and "_" not in message.replace("p_star", "")


def test_words_that_only_look_like_keywords_are_left_alone():
    message = "--image expects BAND=PATH (e.g. r=r.fits); mask=... of NDData"
    assert command_line_message(message, CLASSIFY_OPTIONS) == message


def _modules_loaded_by(code):
    """The heavy modules that running ``code`` in a fresh interpreter imports."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return result.stdout.strip().splitlines()[-1]


#: Modules that take seconds to import; the answers below must come without them.
HEAVY_MODULES = ("torch", "torchvision", "photutils", "astropy", "scipy")


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["classify", "--help"],
        ["info", "--help"],
        ["classify", "catalog.ecsv", "--image", "g"],
        ["classify", "catalog.ecsv", "--image", "g=g.fits", "-o", "out.ecsv", "--threshold", "2"],
        ["demo", "--help"],
    ],
    ids=["help", "classify_help", "info_help", "malformed_image", "bad_threshold", "demo_help"],
)
def test_help_and_argument_errors_load_neither_torch_nor_astropy(argv):
    """Issue 15: every command took 12 s, even ``--help``, importing PyTorch first (the time itself is
    measured by ``python -m benchmarks.benchmark_cli_startup``)."""
    code = f"from astro_stargal.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert _modules_loaded_by(code) == "[]"


def test_import_astro_stargal_and_the_version_lines_of_info_load_no_heavy_module():
    assert _modules_loaded_by("import astro_stargal") == "[]"
    assert (
        _modules_loaded_by("from astro_stargal.cli._info import installed_versions; installed_versions()")
        == "[]"
    )


@pytest.mark.filterwarnings("ignore:model 'csst-resnet50-bilstm'")
def test_info_prints_versions_before_loading_pytorch(capsys):
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    loading = next(index for index, line in enumerate(lines) if line.startswith("loading PyTorch"))
    assert any(line.startswith("astro_stargal ") for line in lines[:loading])
    assert any("torch " in line for line in lines[:loading])
    assert any(line.startswith("default device: ") for line in lines[loading:])
