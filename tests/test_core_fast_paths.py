"""The core's fast paths behave exactly like the general ones they shortcut.

`Scheduler.record_service` credits the whole running batch, listed in batch order, without
validating it call by call, and reads a list of plain ints in place (as every batch argument of a
step is read); `record_service_each` takes the same `call_ids` argument through PyO3's own
conversion and always validates, so it is the yardstick.
"""

import autellix_core as core
import pytest


class IndexedId:
    """Not an int, but converts to one through `__index__`, like numpy integers."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def _scheduler_with_running(n: int = 4) -> tuple[core.Scheduler, list[int]]:
    s = core.Scheduler("plas")
    for call in range(n + 2):
        s.add_call(call, call % 2, 0.0)
    return s, list(s.schedule(0.0, n).admit)


def _error(call) -> tuple[type, str, list[str]]:
    with pytest.raises(Exception) as info:
        call()
    return type(info.value), str(info.value), getattr(info.value, "__notes__", [])


@pytest.mark.parametrize(
    "bad",
    [
        "12",
        [1, "2"],
        [1, -2],
        [1, 2**64],
        [1, 2.0],
        (1, "2"),
        None,
        [7, 7],
        [99],
    ],
)
def test_bad_call_ids_fail_as_the_general_conversion_does(bad):
    s, running = _scheduler_with_running()
    amounts = [0.1] * (len(bad) if hasattr(bad, "__len__") else 1)
    expected = _error(lambda: s.record_service_each(bad, amounts, 1.0))
    assert _error(lambda: s.record_service(bad, 0.1, 1.0)) == expected
    assert all(s.call_info(c)["service"] == 0.0 for c in running), "a rejected call changes nothing"


@pytest.mark.parametrize(
    "convert",
    [
        tuple,
        lambda ids: [IndexedId(i) for i in ids],
        lambda ids: [*ids[:-1], IndexedId(ids[-1])],  # plain ints, then one that is not
    ],
)
def test_other_sequences_and_int_likes_are_accepted_as_before(convert):
    s, running = _scheduler_with_running()
    s.record_service(convert(running), 0.25, 1.0)
    assert all(s.call_info(c)["service"] == 0.25 for c in running)


def test_whole_batch_in_any_order_or_part_credits_like_the_general_path():
    s, running = _scheduler_with_running(6)
    reference, _ = _scheduler_with_running(6)
    for listed in (running, running[::-1], running[:3], running):
        s.record_service(listed, 0.4, 1.0)
        reference.record_service_each(listed, [0.4] * len(listed), 1.0)
    for call in running:
        assert s.call_info(call) == reference.call_info(call)
    assert s.stats() == reference.stats()
    assert s.schedule(2.0, 6).admit == reference.schedule(2.0, 6).admit
