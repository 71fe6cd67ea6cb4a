"""vLLM's waiting queue, reordered every step by the Autellix core.

vLLM's scheduler admits waiting requests by peeking and popping the head of `self.waiting` until
a slot, the token budget or the KV cache runs out. This queue shows it only the requests the core
chose for this step, in the core's order: `__bool__` is false once they are used up, which ends
vLLM's admission loop (in vLLM 0.32 the loop is the only reader of the queue's truth value), while
`__len__` still counts every waiting request so vLLM's bookkeeping stays right.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vllm.v1.core.sched.request_queue import RequestQueue
from vllm.v1.request import Request


class AdmissionQueue(RequestQueue):
    def __init__(self) -> None:
        # Waiting requests in two insertion-ordered maps, so every operation is O(1) however many
        # wait: vLLM's prepends (preempted or skipped requests, newest last) and arrivals. Used
        # only for counting and iteration; admission follows `_admit`.
        self._front: dict[str, Request] = {}
        self._arrived: dict[str, Request] = {}
        self._admit: list[Request] = []  # this step's admissions, most urgent last (pop from end)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._front or request_id in self._arrived

    def set_admissions(self, requests: list[Request]) -> None:
        """The requests vLLM may admit this step, most urgent first (those waiting here)."""
        arrived, front = self._arrived, self._front
        self._admit = [r for r in reversed(requests) if r.request_id in arrived or r.request_id in front]

    def clear_admissions(self) -> None:
        """End of the step: forget admissions vLLM did not take. (The scheduler hands back to
        the core from the requests' states: a request vLLM skipped was popped and prepended
        again, so what is left here is not all vLLM did not start.)"""
        self._admit = []

    def _forget(self, request_id: str) -> None:
        if self._front.pop(request_id, None) is None:
            self._arrived.pop(request_id, None)

    # RequestQueue interface
    def add_request(self, request: Request) -> None:
        self._arrived[request.request_id] = request

    def pop_request(self) -> Request:
        request = self._admit.pop()
        self._forget(request.request_id)
        return request

    def peek_request(self) -> Request:
        if not self._admit:
            raise IndexError("no request admitted this step")
        return self._admit[-1]

    def prepend_request(self, request: Request) -> None:
        self._forget(request.request_id)
        self._front[request.request_id] = request

    def prepend_requests(self, requests: Iterable[Request]) -> None:
        for request in reversed(list(requests)):  # the first ends up frontmost
            self.prepend_request(request)

    def remove_request(self, request: Request) -> None:
        self.remove_requests((request,))

    def remove_requests(self, requests: Iterable[Request]) -> None:
        gone = {r.request_id for r in requests}
        for request_id in gone:
            self._forget(request_id)
        if self._admit:
            self._admit = [r for r in self._admit if r.request_id not in gone]

    def __bool__(self) -> bool:
        return bool(self._admit)

    def __len__(self) -> int:
        return len(self._front) + len(self._arrived)

    def __iter__(self) -> Iterator[Request]:
        return iter([*reversed(self._front.values()), *self._arrived.values()])
