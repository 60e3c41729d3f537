"""The delay before the supervisor starts the Gold job again after an unplanned stop."""

from __future__ import annotations

from dataclasses import dataclass

# A job that ran this long before it stopped counts as having run stably: the next delay starts
# from the first one again.
STABLE_AFTER_S = 600.0


@dataclass
class RestartBackoff:
    """`first` seconds after the first unplanned stop, doubled after each stop that follows a
    short run, never more than `cap`; back to `first` once a run lasted `stable_after` seconds.
    No limit on the number of restarts: a stream supervised for weeks keeps coming back."""

    first: float
    cap: float
    stable_after: float = STABLE_AFTER_S
    _next: float | None = None

    def __post_init__(self) -> None:
        if self.first < 0 or self.cap < self.first:
            raise ValueError(f"need 0 <= first <= cap, got first={self.first}, cap={self.cap}")

    def delay(self, ran_for: float) -> float:
        """The delay before the next start, given how long the run that just stopped lasted."""
        if self._next is None or ran_for >= self.stable_after:
            self._next = self.first
        current = self._next
        self._next = min(self.cap, max(current * 2, 1.0))
        return current
