"""In-process counters: events received, accepted, dropped by reason, and sampled step timings.

Labels are closed sets (endpoint, drop reason, step name); no IP, identifier or URL is ever a label.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from proxy.model import DropReason


@dataclass
class Metrics:
    received: Counter[str] = field(default_factory=Counter)  # by endpoint
    accepted: int = 0
    dropped: Counter[DropReason] = field(default_factory=Counter)
    rejected_requests: Counter[int] = field(default_factory=Counter)  # by HTTP status
    step_ns: Counter[str] = field(default_factory=Counter)  # summed over sampled runs
    step_runs: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, object]:
        return {
            "received": dict(self.received),
            "accepted": self.accepted,
            "dropped": {str(k): v for k, v in self.dropped.items()},
            "rejected_requests": {str(k): v for k, v in self.rejected_requests.items()},
            "step_us_per_run": {
                name: round(self.step_ns[name] / runs / 1000, 3)
                for name, runs in self.step_runs.items()
                if runs
            },
        }
