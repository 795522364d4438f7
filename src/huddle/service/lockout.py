"""Lockout after repeated bad secrets: bad tokens, a wrong registration secret (SPEC F-94).

The edge calls `check(key)` before it looks at a secret and `failed(key)` when the secret was
wrong; a right one clears nothing (one valid token must not buy more guesses at another secret from
the same address: failures only age out of the window). `max_failures` failures of one key within `window_s` lock
that key out for `lockout_s`: `check` then raises LockedOut (429, with the seconds left) whatever
the caller sends, so guessing costs `lockout_s` per `max_failures` guesses.

Keys are the client address (`address_key`) for bad tokens and secrets alike, and for a wrong
registration secret also the agent id it asks for (`agent_key`): the address key stops one address
guessing for many agents, the agent key stops guessing one id from many addresses. Anyone can name
an agent id, so the agent key should guard registration only, never tokens the agent holds.

Memory is bounded: a key whose failures are all older than `window_s` and that is not locked out is
forgotten, and at most `max_keys` are kept. At the cap the key touched longest ago is forgotten
(and with it any lockout it had): freeing one locked-out key takes `max_keys` distinct other keys
failing after it, each of which is then counted and locked out on its own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from huddle.errors import LockedOut
from huddle.service.rate_limits import DEFAULT_MAX_KEYS, address_key, agent_key

__all__ = ["Lockout", "address_key", "agent_key"]


@dataclass(slots=True)
class _Record:
    # At most max_failures times, oldest first (a list: a deque costs ~600 bytes even when empty).
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    touched: float = 0.0


class Lockout:
    """Counts failures per key over a sliding window. `max_failures` of 0 turns lockout off."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        lockout_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
    ):
        if max_failures < 0:
            raise ValueError("max_failures must be 0 (off) or more")
        if max_failures and (window_s <= 0 or lockout_s <= 0):
            raise ValueError("window_s and lockout_s must be greater than 0")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_failures = max_failures
        self.window_s = float(window_s)
        self.lockout_s = float(lockout_s)
        self.enabled = max_failures > 0
        self.max_keys = max_keys
        self._clock = clock
        # Ordered least recently touched first, so idle records are found at the front.
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self.evicted = 0  # records forgotten at the cap: a flood of distinct keys shows here

    def __len__(self) -> int:
        return len(self._records)

    def locked_for(self, key: str) -> float:
        """Seconds `key` stays locked out (0 when it is not)."""
        record = self._records.get(key)
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self._clock())

    def check(self, key: str) -> None:
        """Raises LockedOut while `key` is locked out; does nothing otherwise."""
        left = self.locked_for(key) if self.enabled else 0.0
        if left > 0:
            raise LockedOut(
                f"too many failed attempts with a bad token or secret for {key}; locked out for another"
                f" {math.ceil(left)} s. Check the token or secret you send (huddle token issue, or ask the"
                " operator), then retry after that",
                retry_after_s=left,
            )

    def failed(self, key: str) -> bool:
        """Records a bad secret for `key`; True when this failure locked it out."""
        if not self.enabled:
            return False
        now = self._clock()
        self._forget_idle(now)
        record = self._records.get(key)
        if record is None:
            if len(self._records) >= self.max_keys:
                self._records.popitem(last=False)
                self.evicted += 1
            record = self._records[key] = _Record()
        else:
            self._records.move_to_end(key)
        record.touched = now
        failures = record.failures
        failures.append(now)
        expired = next((i for i, at in enumerate(failures) if now - at < self.window_s), len(failures))
        del failures[:expired]
        if len(failures) >= self.max_failures:
            failures.clear()
            record.locked_until = now + self.lockout_s
            return True
        return False

    def _forget_idle(self, now: float) -> None:
        records = self._records
        while records:
            key, record = next(iter(records.items()))
            if record.locked_until > now or now - record.touched < self.window_s:
                return
            del records[key]
