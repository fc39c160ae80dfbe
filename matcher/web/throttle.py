"""Sign-in throttling and remembered HTTP Basic credentials: argon2 runs rarely, on purpose.

Both live in the process's memory: a restart forgets them, which only ever makes the
service stricter (credentials are verified again) or briefly lenient (one more window).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

Clock = Callable[[], float]
MAX_TRACKED_KEYS = 10_000  # accounts and addresses remembered; the oldest are forgotten


class TooManySignIns(Exception):
    """Too many failed sign-ins for this account or address in the window."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class SignInThrottle:
    """Counts sign-in attempts per key (account, client address) over a sliding window.

    An attempt counts from the moment it starts, before argon2 runs, so a burst of parallel
    guesses is cut off at the limit instead of all being verified; a success un-counts it.
    """

    def __init__(self, *, window_s: float, max_failures: int,
                 clock: Clock = time.monotonic) -> None:
        self.window_s = window_s
        self.max_failures = max_failures
        self.clock = clock
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def begin(self, keys: Iterable[str]) -> float:
        """Count an attempt for every key, or raise TooManySignIns; returns its stamp."""
        keys = list(keys)
        with self._lock:
            now = self.clock()
            waits = [self._wait(key, now) for key in keys]
            if any(wait > 0 for wait in waits):
                raise TooManySignIns(max(waits))
            for key in keys:
                self._stamps(key).append(now)
            return now

    def succeeded(self, keys: Iterable[str], stamp: float) -> None:
        """The attempt begun at `stamp` was right: it is not a failure."""
        with self._lock:
            for key in keys:
                stamps = self._attempts.get(key)
                if stamps is not None and stamp in stamps:
                    stamps.remove(stamp)

    def _wait(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        stamps = self._attempts.get(key)
        if stamps is None:
            return 0.0
        while stamps and stamps[0] <= now - self.window_s:
            stamps.popleft()
        if len(stamps) < self.max_failures:
            return 0.0
        return stamps[0] + self.window_s - now

    def _stamps(self, key: str) -> deque[float]:
        """The attempt stamps of a key, creating (and bounding the table) as needed."""
        stamps = self._attempts.get(key)
        if stamps is None:
            stamps = self._attempts[key] = deque()
            while len(self._attempts) > MAX_TRACKED_KEYS:
                self._attempts.popitem(last=False)
        else:
            self._attempts.move_to_end(key)
        return stamps


class VerifiedCredentials:
    """HTTP Basic credentials verified recently, by a keyed hash (never the password)."""

    def __init__(self, *, ttl_s: float, size: int, clock: Clock = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.clock = clock
        self._key = secrets.token_bytes(32)  # per process: the hashes mean nothing elsewhere
        self._verified: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, username: str, password: str) -> bytes:
        """A keyed hash of the pair; unusable to guess passwords without the process key."""
        pair = username.encode("utf-8") + b"\0" + password.encode("utf-8")
        return hmac.new(self._key, pair, hashlib.sha256).digest()

    def lookup(self, username: str, password: str) -> str | None:
        """The username if this pair was verified within the TTL."""
        digest = self._digest(username, password)
        with self._lock:
            found = self._verified.get(digest)
            if found is None:
                return None
            if found[1] <= self.clock():
                del self._verified[digest]
                return None
            return found[0]

    def remember(self, username: str, password: str) -> None:
        """Remember a pair that argon2 just verified."""
        if self.ttl_s <= 0:
            return
        digest = self._digest(username, password)
        with self._lock:
            self._verified[digest] = (username, self.clock() + self.ttl_s)
            self._verified.move_to_end(digest)
            while len(self._verified) > self.size:
                self._verified.popitem(last=False)
