"""The metric callbacks of a run (`continual.metrics.registry`) and what they leave behind.

Metrics without a switch (the accuracy matrix, the method's cost) are always measured; the
others are attached only if enabled and the method's `evaluate` returns what they read
(`continual.metrics.protocol`); otherwise their metrics.json entry is null. The task loop
passes `callbacks` to every task's Trainer, calls `begin(t)` before each test pass, and stores
`state_dict()` in its resume state.
"""

from __future__ import annotations

from continual.metrics import registry, report


class MetricSuite:
    def __init__(self, cfg, stream, module):
        self.metrics = registry.metrics()
        self.by_key = registry.build(cfg, stream, module)  # key -> callback, None where not measured
        self.callbacks = [cb for cb in self.by_key.values() if cb is not None]

    def begin(self, after: int) -> None:
        for cb in self.callbacks:
            cb.begin(after)

    def state_dict(self) -> dict:
        return {cb.key: cb.state_dict() for cb in self.callbacks}

    def load_state_dict(self, state: dict) -> None:
        for cb in self.callbacks:
            cb.load_state_dict(state[cb.key])

    @property
    def tasks_done(self) -> int:
        return self.by_key["forgetting"].tasks_done

    def results(self) -> dict:
        """The metrics.json entries of every metric, in registry order."""
        out = {}
        for m in self.metrics:
            cb = self.by_key[m.key]
            out.update(m.entries(cb.results() if cb else None))
        return out

    def scalars(self) -> dict:
        return {k: v for cb in self.callbacks for k, v in cb.scalars().items()}

    # -- files and W&B at the end of a run ---------------------------------------------------
    def files(self, metrics: dict) -> dict:
        """File name -> content (CSV text, or a matplotlib figure for a .png) beyond the heatmap."""
        title = report.run_title(metrics)
        return {name: content for cb in self.callbacks for name, content in cb.files(metrics, title).items()}

    def log(self, logger, metrics: dict) -> None:
        """Tables and histograms of the finished stream (W&B only: `RunLogger.finish` calls this)."""
        for cb in self.callbacks:
            cb.log_wandb(logger, metrics)
