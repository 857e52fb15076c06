"""Merge concurrent requests into model runs bounded by tokens, not request counts.

One `Batcher` per model: request handlers (on the event loop) `submit` their tokenized
items; one inference thread takes a batch, runs `pipeline.infer` on it (onnxruntime's
`run` is thread-safe and releases the GIL, so the event loop keeps serving meanwhile), and
hands each request its rows, in its own order.

A batch always contains the oldest waiting item (so nothing starves), then the waiting
items closest to it in length, while `longest × count ≤ max_batch_tokens`, the batch holds
items of at most `max_batch_requests` requests, and (static-shape graphs) at most the
graph's fixed rows. Items of requests whose client went away are dropped before inference.
The batch then runs, sorted by length, in model runs of at most `run_tokens` padded tokens
each (on a CPU, smaller runs are faster per text: see `limits.CPU_RUN_TOKENS`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from .problems import Problem


class QueueFull(Problem):
    def __init__(self, model: str, waiting: int, limit: int, asked: int):
        super().__init__(429, f"model '{model}' has {waiting} items waiting (limit {limit}), no room for "
                              f"{asked} more; retry after a short wait, or send fewer items",
                         reason="queue_full", headers={"Retry-After": "1"})


@dataclass(eq=False)
class Ticket:
    """One request's items in flight: results fill in as batches finish."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    results: list
    remaining: int
    enqueued: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


@dataclass(eq=False)
class _Item:
    encoding: Any
    tokens: int
    ticket: Ticket
    position: int


def _finish(future: asyncio.Future, results=None, error: BaseException | None = None) -> None:
    if future.done():  # the request gave up (disconnect, shutdown) meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(results)


def choose_batch(pending: Sequence[_Item], *, max_tokens: int, max_requests: int,
                 max_rows: int | None = None) -> list[int]:
    """Indices into `pending` (oldest first) of the next batch; see the module docstring."""
    if not pending:
        return []
    oldest = pending[0]
    chosen = [0]
    tickets = {id(oldest.ticket)}
    longest = oldest.tokens
    # closest in length to the oldest item first; ties keep arrival order
    for index in sorted(range(1, len(pending)), key=lambda i: (abs(pending[i].tokens - oldest.tokens), i)):
        if max_rows is not None and len(chosen) >= max_rows:
            break
        item = pending[index]
        new_longest = max(longest, item.tokens)
        if new_longest * (len(chosen) + 1) > max_tokens:
            continue
        if id(item.ticket) not in tickets and len(tickets) >= max_requests:
            continue
        chosen.append(index)
        tickets.add(id(item.ticket))
        longest = new_longest
    return chosen


class Batcher:
    """The queue and the inference thread of one model."""

    def __init__(self, name: str, pipeline, *, max_tokens: int, max_requests: int, max_queue: int,
                 run_tokens: int | None = None, metrics=None):
        self.name = name
        self.pipeline = pipeline
        self.max_tokens = max_tokens
        self.run_tokens = run_tokens or max_tokens
        self.max_requests = max_requests
        self.max_queue = max_queue
        self.metrics = metrics
        self._pending: list[_Item] = []
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"onnxport-infer-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the inference thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def submit(self, encodings: Sequence) -> Ticket:
        """Queue one request's items (call on the event loop); await `ticket.future` for the rows."""
        loop = asyncio.get_running_loop()
        ticket = Ticket(loop, loop.create_future(), [None] * len(encodings), len(encodings))
        if not encodings:
            ticket.future.set_result([])
            return ticket
        # longest first within a request, so the oldest item anchors the longest batch
        items = [_Item(e, len(e.ids), ticket, i) for i, e in enumerate(encodings)]
        items.sort(key=lambda item: -item.tokens)
        with self._condition:
            if self._stopping:
                raise Problem(503, "the server is shutting down; retry on another instance",
                              reason="shutting_down", headers={"Retry-After": "1"})
            if len(self._pending) + len(items) > self.max_queue:
                raise QueueFull(self.name, len(self._pending), self.max_queue, len(items))
            self._pending.extend(items)
            self._report_queue()
            self._condition.notify()
        return ticket

    def _report_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_size.labels(self.name).set(len(self._pending))

    def _take(self) -> list[_Item]:
        """Under the lock: drop abandoned items, then remove and return the next batch."""
        live = [item for item in self._pending if not item.ticket.cancelled]
        if self.metrics is not None and len(live) < len(self._pending):
            self.metrics.dropped_items.labels(self.name).inc(len(self._pending) - len(live))
        chosen = set(choose_batch(live, max_tokens=self.max_tokens, max_requests=self.max_requests,
                                  max_rows=self.pipeline.batch_rows))
        self._pending = [item for index, item in enumerate(live) if index not in chosen]
        self._report_queue()
        return [live[index] for index in sorted(chosen)]

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if not self._pending:
                    return
                batch = self._take()
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        for run in model_runs(batch, self.run_tokens):
            self._run_model(run)

    def _run_model(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            rows = self.pipeline.infer([item.encoding for item in batch])
        except BaseException as error:  # the requests get the error; the thread lives on
            for ticket in {id(item.ticket): item.ticket for item in batch}.values():
                ticket.cancelled = True  # its items still queued are dropped
                ticket.loop.call_soon_threadsafe(_finish, ticket.future, None, error)
            return
        finished = time.perf_counter()
        if self.metrics is not None:
            self.metrics.observe_batch(self.name, [item.ticket.enqueued for item in batch], started,
                                       finished, len(batch), max(item.tokens for item in batch))
        for item, row in zip(batch, rows):
            ticket = item.ticket
            ticket.results[item.position] = row
            ticket.remaining -= 1
            if ticket.remaining == 0:
                ticket.loop.call_soon_threadsafe(_finish, ticket.future, ticket.results)


def model_runs(batch: Sequence[_Item], run_tokens: int) -> list[list[_Item]]:
    """`batch` sorted by length, cut into model runs: at most `run_tokens` padded tokens each
    (longest × count; an item longer than that runs alone), and at most `MAX_PADDING` of a
    run's tokens padding. Abandoned items are left out."""
    runs: list[list[_Item]] = []
    current: list[_Item] = []
    real = 0
    for item in sorted(batch, key=lambda item: item.tokens):
        if item.ticket.cancelled:
            continue
        if current:
            padded = item.tokens * (len(current) + 1)
            if padded > run_tokens or padded - (real + item.tokens) > max(PADDING_SLACK, MAX_PADDING * padded):
                runs.append(current)
                current, real = [], 0
        current.append(item)
        real += item.tokens
    return runs + [current] if current else runs


# Padding is work thrown away, and on a CPU a run saves little over separate runs once its
# texts are long, so a run takes a longer text only while padding stays under 20% of its
# tokens (or 32 tokens). 64 clients sending one text each of a mixed set (AMD EPYC, 2 cores,
# in-process, no HTTP): 73 texts/s unbatched; batched without this limit 69, with it 86.
MAX_PADDING = 0.2
PADDING_SLACK = 32
