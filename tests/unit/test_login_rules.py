"""Log-in rules without a broker: blocks that grow, attempts counted in advance, PINs too easy to guess."""
from datetime import datetime, timedelta, timezone

import pytest

from services.patrons.errors import PinTooCommon
from services.patrons.rules import Throttle, pin_refusal

START = datetime(2026, 12, 2, tzinfo=timezone.utc)
THROTTLE = Throttle(max_failures=3, window=timedelta(minutes=15), block=timedelta(minutes=10),
                    max_block=timedelta(minutes=45))


def fail_round(state, at):
    """As many failures at ``at`` as it takes to block."""
    failures, first_failed_at, blocked_until = state
    for _ in range(THROTTLE.max_failures):
        failures, first_failed_at, blocked_until = THROTTLE.after_failure(failures, first_failed_at, at, blocked_until)
    return failures, first_failed_at, blocked_until


def test_each_block_after_the_first_lasts_twice_as_long_up_to_the_cap():
    state, blocks = (0, None, None), []
    at = START
    for _round in range(5):
        state = fail_round(state, at)
        blocks.append(state[2] - at)
        at = state[2] + timedelta(seconds=1)  # the next round begins just after the block ends
    assert blocks == [timedelta(minutes=10), timedelta(minutes=20), timedelta(minutes=40), timedelta(minutes=45),
                      timedelta(minutes=45)]


def test_a_key_left_alone_long_after_its_block_starts_from_the_first_block_again():
    state = fail_round(fail_round((0, None, None), START), START + timedelta(minutes=11))
    assert state[2] == START + timedelta(minutes=31)  # the second block: twenty minutes
    quiet = state[2] + THROTTLE.max_block + timedelta(seconds=1)
    assert fail_round(state, quiet)[2] == quiet + timedelta(minutes=10)


def test_a_rounds_old_failures_expire_but_its_blocks_are_remembered():
    state = fail_round((0, None, None), START)
    failures, first, blocked = THROTTLE.after_failure(*state[:2], START + timedelta(minutes=11), state[2])
    failures, first, blocked = THROTTLE.after_failure(failures, first, START + timedelta(minutes=30), blocked)
    assert (failures, first) == (4, START + timedelta(minutes=30))  # one block behind it, one failure in the round


def test_an_attempt_counted_in_advance_that_succeeds_is_given_back():
    assert THROTTLE.refunded(2, None, START) == (1, None)
    assert THROTTLE.refunded(0, None, START) == (0, None)
    blocked_by_it = START + timedelta(minutes=10)
    assert THROTTLE.refunded(3, blocked_by_it, START) == (2, None)
    earlier_block = START - timedelta(minutes=1)  # ended: kept, so that the next block is still longer
    assert THROTTLE.refunded(4, earlier_block, START) == (3, earlier_block)


@pytest.mark.parametrize("pin", ["0000", "1111", "99999999", "1234", "0123", "56789", "9876", "43210", "2580",
                                 "1212", "1192"])
def test_pins_anyone_would_try_first_are_refused(pin):
    refusal = pin_refusal(pin)
    assert isinstance(refusal, PinTooCommon) and list(refusal.details) == ["pin"]


@pytest.mark.parametrize("pin", ["8303", "2468", "1357", "4071", "30718", "12345670", "9012"])
def test_other_pins_are_taken(pin):
    assert pin_refusal(pin) is None
