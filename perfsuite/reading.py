"""Reading one response stream into its RequestRecord: the load generator's per-token loop.

A transport (perfsuite.http1) hands each network block to `StreamReading.feed` with the time it
arrived; the reading splits the blocks into lines, has the protocol parse each one
(perfsuite.protocols), and keeps the arrival time of every token event and the counts the server
reported. Every event a block completes is timed at that block's arrival.
"""

from __future__ import annotations

from perfsuite.protocols import TOKEN, EventKind, StreamProtocol

__all__ = ["StreamReading"]


class StreamReading:
    """One response stream, read block by block into `rec` (a perfsuite.loadgen.RequestRecord).

    Chunks without answer text (a reasoning model's thinking, the empty role chunk) take the slow path:
    `_lead` counts those before the first answer chunk, which is then chunk_times[_lead]
    (rec.first_answer), so an answer chunk (the shared TOKEN) costs no more than a plain token."""

    __slots__ = ("_parse", "_rec", "_times", "_lead", "_reasoning", "_pending", "done")

    def __init__(self, protocol: StreamProtocol, rec) -> None:
        self._parse = protocol.parse
        self._rec = rec
        self._times = rec.chunk_times
        self._lead = self._reasoning = 0
        self._pending = b""
        self.done = False  # the stream said it is over ([DONE]); later blocks are not read

    def feed(self, now: float, block: bytes) -> bool:
        """Read one block that arrived at `now` (time.perf_counter()); True once the stream is over.
        A server error in the stream raises RuntimeError."""
        if self.done:
            return True
        parse, times = self._parse, self._times
        *lines, self._pending = (self._pending + block).split(b"\n")
        for line in lines:
            if not line:  # the blank line after every SSE event
                continue
            event = parse(line)
            if event is None:
                continue
            if event is TOKEN:
                times.append(now)
                continue
            kind = event.kind
            if kind is EventKind.DONE:
                self.done = True
                return True
            if kind is EventKind.ERROR:
                raise RuntimeError(f"server error in stream: {event.message}")
            if kind is EventKind.TOKEN:
                if not event.answer:
                    if len(times) == self._lead:  # no answer yet
                        self._lead += 1
                    self._reasoning += event.reasoning
                times.append(now)
            if event.has_counts:
                rec = self._rec
                rec.prompt_tokens = event.prompt_tokens
                rec.output_tokens = event.output_tokens
                rec.reasoning_tokens = event.reasoning_tokens
        return False

    def finish(self) -> None:
        """Write what the stream said about reasoning into the record (also after a failure)."""
        times, lead = self._times, self._lead
        self._rec.reasoning_chunks = self._reasoning
        self._rec.first_answer = times[lead] if len(times) > lead else None
