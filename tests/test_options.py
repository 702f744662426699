"""The list options every command and benchmark shares (``kit/options.py``)."""

from __future__ import annotations

import pytest

from deploy.runtime.errors import KitError
from kit.options import parse_floats, parse_ints, parse_seeds


def test_seeds_take_lists_and_ranges_in_order_without_duplicates() -> None:
    assert parse_seeds("3, 0-2,1") == [3, 0, 1, 2]
    with pytest.raises(KitError, match=r"^--train-seeds: expected non-negative integers"):
        parse_seeds("a,b", "--train-seeds")
    with pytest.raises(KitError, match="--seeds: give at least one seed"):
        parse_seeds(" , ")


def test_ints_are_positive_and_none_only_where_allowed() -> None:
    assert parse_ints("1,10,50,10", "--ipcs") == (1, 10, 50)
    assert parse_ints("none", "--tiny", allow_none=True) == () and parse_ints("", "--tiny", allow_none=True) == ()
    for bad in ("0", "1,x", "1.5", "-1", "none"):
        with pytest.raises(KitError, match=r"^--ipcs: expected positive integers like 1,10,50, got"):
            parse_ints(bad, "--ipcs")
    with pytest.raises(KitError, match="--ipcs: give at least one value"):
        parse_ints(" , ", "--ipcs")


def test_floats_keep_order_and_name_the_option() -> None:
    assert parse_floats("20, 40,20,0.5", "--budgets") == (20.0, 40.0, 0.5)
    assert parse_floats("None", "--budgets") == ()
    with pytest.raises(KitError, match=r"^--budgets: expected comma-separated numbers") as info:
        parse_floats("20,abc", "--budgets")
    assert "\n" not in str(info.value)
