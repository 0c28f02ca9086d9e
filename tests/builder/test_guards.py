"""The mass-deletion guard shared by ``run`` and ``gc``, and the ``--max-delete`` it suggests."""

from __future__ import annotations

import pytest

from builder.guards import MASS_DELETE_FLOOR, deletion_allowed, mass_delete, max_delete_hint


def test_the_hint_for_2549_of_10000_is_026_not_a_refused_025() -> None:
    """The issue's case: 2,549 of 10,000 is refused at 0.25; the hint names 0.26, which passes."""
    assert not deletion_allowed(2549, 10_000, 0.25)
    assert max_delete_hint(2549, 10_000) == 0.26
    assert deletion_allowed(2549, 10_000, 0.26)


@pytest.mark.parametrize("published", [1_001, 1_337, 2_000, 4_100, 10_000, 99_999, 1_000_003])
def test_the_hint_is_the_smallest_two_decimal_value_that_passes(published: int) -> None:
    """For every refusable count the hint passes, and one hundredth less would not."""
    for deleted in range(MASS_DELETE_FLOOR + 1, published + 1, max(1, published // 997)):
        hint = max_delete_hint(deleted, published)
        assert deletion_allowed(deleted, published, hint), (deleted, published, hint)
        assert hint == round(hint, 2) <= 1.0
        assert not deletion_allowed(deleted, published, round(hint - 0.01, 2))


def test_float_error_does_not_make_the_hint_fail() -> None:
    """1,015 of 1,450 is exactly 0.70, but 0.7 * 1450 is 1014.999...: the hint is 0.71."""
    assert 0.7 * 1_450 < 1_015
    assert not deletion_allowed(1_015, 1_450, 0.70)
    assert max_delete_hint(1_015, 1_450) == 0.71
    assert deletion_allowed(1_015, 1_450, 0.71)


def test_mass_delete_message_names_counts_share_and_a_passing_flag() -> None:
    """The refusal says what, how many of how many, the share, and a --max-delete that passes."""
    assert mass_delete(999_999, 1_000_000, 1.0, doing="x", keys="y", question="z?") is None
    assert mass_delete(1_000, 1_000, 0.0, doing="x", keys="y", question="z?") is None  # floor
    doing, keys, question = "gc would delete", "segment keys", "is --keep right?"
    message = mass_delete(2549, 10_000, 0.25, doing=doing, keys=keys, question=question)
    assert message == (
        "gc would delete 2549 of 10000 segment keys (25%); is --keep right? "
        "If it is intended, rerun with --max-delete 0.26"
    )
