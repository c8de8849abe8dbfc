"""The ``sg_flags`` bits describe themselves: flag values print as names, numbers on request."""

import numpy as np
import pytest

from astro_stargal import SourceFlag, describe_flags


def test_a_flag_value_prints_as_the_names_of_its_bits():
    """Issue 15: ``str(SourceFlag(296))`` was ``'296'``."""
    flags = SourceFlag(296)
    assert str(flags) == "BAND_MISSING|LOW_SNR|BLENDED"
    assert f"{flags}" == "BAND_MISSING|LOW_SNR|BLENDED"
    assert "|".join(describe_flags(296)) == str(flags)


@pytest.mark.parametrize(("format_spec", "expected"), [("d", "296"), ("5d", "  296"), ("#x", "0x128")])
def test_a_numeric_format_gives_the_number(format_spec, expected):
    assert format(SourceFlag(296), format_spec) == expected


def test_a_width_without_a_type_pads_the_names():
    assert f"{SourceFlag.LOW_SNR:>10}" == "   LOW_SNR"


def test_no_bit_set_prints_zero_and_unknown_bits_are_not_hidden():
    assert str(SourceFlag(0)) == "0"
    unknown = 1 << 20
    assert str(SourceFlag(unknown | SourceFlag.OFF_IMAGE)) == f"OFF_IMAGE|{unknown}"


def test_a_flag_still_behaves_as_its_integer():
    flags = SourceFlag.PARTIAL_OVERLAP | SourceFlag.LOW_SNR
    assert flags == 34 and int(flags) == 34 and flags & SourceFlag.LOW_SNR


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint16])
def test_an_entry_of_the_sg_flags_column_makes_a_flag(dtype):
    """``SourceFlag(table["sg_flags"][0])`` once raised: enum refused NumPy integers."""
    column = np.array([296, 0], dtype=dtype)
    assert str(SourceFlag(column[0])) == "BAND_MISSING|LOW_SNR|BLENDED"
    assert SourceFlag(column[1]) == 0


def test_a_value_that_is_not_an_integer_is_still_refused():
    with pytest.raises(ValueError, match="not a valid SourceFlag"):
        SourceFlag(2.5)
