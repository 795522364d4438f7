"""Per-caller rate limits: one token bucket per key (SPEC F-94).

A key is who the edge holds responsible for a request: the authenticated agent (`agent_key`), or
the client address for endpoints reached before anyone is authenticated (`address_key`). Each key
may make `burst` requests at once and `rate_per_s` a second after that; `check` answers None
(allowed, and counted) or how many seconds to wait, for a 429's `Retry-After`.

Memory is bounded two ways. A bucket that has refilled completely is the same as no bucket, so it
is forgotten the next time the limiter is used: idle callers cost nothing. And at most `max_keys`
buckets are kept: when a flood of distinct keys reaches the cap, the bucket used longest ago is
forgotten and that key starts again with a full burst. A caller that keeps sending stays the most
recently used, so a flood cannot reset it; only keys that went quiet are dropped early.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from huddle.errors import RateLimited

DEFAULT_MAX_KEYS = 10_000


def agent_key(agent_id: str) -> str:
    """The key of an authenticated agent (prefixed so an agent id can never collide with an address)."""
    return f"agent:{agent_id}"


def address_key(address: str) -> str:
    """The key of a client address, for endpoints reached before anyone is authenticated."""
    return f"addr:{address}"


class RateLimiter:
    """Token buckets per key. `rate_per_s` or `burst` of 0 turns limiting off (every call allowed).

    `clock` should be monotonic (time.monotonic in production); a clock that steps back refills
    nothing rather than failing.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
    ):
        if rate_per_s < 0 or burst < 0:
            raise ValueError("rate_per_s and burst must be 0 (off) or more")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self.enabled = self.rate_per_s > 0 and self.burst > 0
        self.max_keys = max_keys
        self._clock = clock
        # key -> [tokens left, time of last update]; ordered least recently used first.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        # Seconds an untouched bucket needs to refill from empty: after that it is as good as absent.
        self._refill_s = self.burst / self.rate_per_s if self.enabled else 0.0
        self.evicted = 0  # buckets forgotten at the cap (not idle ones): a flood of keys shows here

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str) -> float | None:
        """None: the request is allowed and counted. Otherwise the seconds until one more is allowed."""
        if not self.enabled:
            return None
        now = self._clock()
        self._forget_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
                self.evicted += 1
            self._buckets[key] = [self.burst - 1.0, now]
            return None
        self._buckets.move_to_end(key)
        tokens = min(float(self.burst), bucket[0] + max(0.0, now - bucket[1]) * self.rate_per_s)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return None
        # A refused request is not counted: waiting the answer is enough, retrying sooner is refused again.
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate_per_s

    def enforce(self, key: str, who: str = "") -> None:
        """`check`, raising RateLimited (429, with the wait in `retry_after_s`) when the key is over its limit."""
        wait = self.check(key)
        if wait is not None:
            raise RateLimited(
                f"too many requests from {who or key}: the limit is {self.rate_per_s:g} a second with bursts of"
                f" {self.burst}; retry in {wait:.2f} s",
                retry_after_s=wait,
            )

    def _forget_idle(self, now: float) -> None:
        # Least recently used first: stop at the first bucket still refilling. One refilled bucket may
        # hide behind it for a while; it is dropped when its turn comes, or at the cap.
        buckets = self._buckets
        while buckets:
            key, (tokens, at) = next(iter(buckets.items()))
            if now - at < self._refill_s * (1.0 - tokens / self.burst):
                return
            del buckets[key]
