"""What one training run did, as plain data: no torch here, so the demo's parent process and
the trainer process's wire format can use it without importing the training stack."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainingOutcome:
    """What one run did; ``message`` is the ``models`` value when ``promoted``."""

    promoted: bool
    reason: str
    version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    data_window: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return json.dumps({k: v for k, v in vars(self).items() if k != "message"},
                          default=str, sort_keys=True)
