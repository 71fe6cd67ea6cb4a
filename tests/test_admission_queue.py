"""vLLM's waiting queue as the plug-in replaces it: admission in the core's order only, counts and
order of everything waiting, and O(1) prepends (vLLM prepends every call it preempts or skips)."""

from types import SimpleNamespace

import pytest
from autellix_core import AdmissionQueue


@pytest.fixture
def queue():
    return AdmissionQueue()


def _request(request_id: str):  # the queue reads only the id
    return SimpleNamespace(request_id=request_id)


def _ids(queue) -> list[str]:
    return [r.request_id for r in queue]


def test_vllm_sees_only_this_steps_admissions_in_the_cores_order(queue):
    a, b, c = _request("a"), _request("b"), _request("c")
    for r in (a, b, c):
        queue.add_request(r)
    queue.set_admissions([c, _request("gone"), a])  # a request no longer waiting is dropped
    assert bool(queue) and len(queue) == 3
    assert queue.peek_request() is c and queue.pop_request() is c
    assert queue.pop_request() is a
    assert not queue and len(queue) == 1 and _ids(queue) == ["b"]
    queue.clear_admissions()
    assert not queue


def test_prepends_go_first_newest_first_and_keep_counts(queue):
    requests = {name: _request(name) for name in "abcde"}
    for name in "abc":
        queue.add_request(requests[name])
    queue.prepend_request(requests["b"])  # preempted: moves to the front, counted once
    queue.prepend_request(requests["d"])
    queue.prepend_requests([requests["e"], requests["a"]])  # skipped this step, in this order
    assert _ids(queue) == ["e", "a", "d", "b", "c"]
    assert len(queue) == 5
    queue.set_admissions([requests["a"], requests["c"]])
    queue.remove_requests([requests["a"], requests["d"]])
    assert _ids(queue) == ["e", "b", "c"]
    assert queue.pop_request() is requests["c"] and not queue
    assert "c" not in queue and "e" in queue


def test_nothing_admitted_is_an_index_error_and_loses_no_request(queue):
    queue.add_request(_request("a"))
    for take in (queue.peek_request, queue.pop_request):
        with pytest.raises(IndexError, match="no request admitted"):
            take()
    assert len(queue) == 1 and "a" in queue
    queue.remove_request(_request("a"))
    assert len(queue) == 0 and "a" not in queue
