"""Per-run budget: a cap on HTTP calls and tokens, enforced *before* each call.

A call first reserves ``estimated prompt tokens + max_tokens``; it is refused (typed failure
``kind="budget"``) when the calls or the reserved+spent tokens would pass the cap. After the call
the reservation is replaced by the real usage the server reported. Retries and repair rounds are
calls too. Thread-safe: one Budget can be shared by all threads of a run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Budget:
    """Calls/tokens allowed for one run; ``used_*`` may be preloaded from earlier processes."""

    max_calls: int = 500
    max_tokens: int = 400_000
    used_calls: int = 0
    used_tokens: int = 0
    _reserved: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reserve(self, tokens: int) -> str | None:
        """Take one call and ``tokens`` provisional tokens; returns why not (or None if granted)."""
        with self._lock:
            if self.used_calls >= self.max_calls:
                return f"call budget exhausted ({self.used_calls}/{self.max_calls} calls)"
            if self.used_tokens + self._reserved + tokens > self.max_tokens:
                return (f"token budget exhausted ({self.used_tokens} used + {self._reserved} reserved "
                        f"+ {tokens} needed > {self.max_tokens})")
            self.used_calls += 1
            self._reserved += tokens
            return None

    def settle(self, reserved: int, actual: int) -> None:
        """Replace a reservation by what the call really used (``actual`` tokens)."""
        with self._lock:
            self._reserved -= reserved
            self.used_tokens += max(0, actual)

    def remaining(self) -> dict[str, int]:
        with self._lock:
            return {"calls": self.max_calls - self.used_calls,
                    "tokens": self.max_tokens - self.used_tokens - self._reserved}
