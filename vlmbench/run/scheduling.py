"""The pytest-xdist scheduler of `pytest benchmarks -n N`: one contiguous slice of the sweep per GPU.

Why it exists: xdist's own modes do not fit a sweep of few variants. `--dist load` hands cases out
one by one, so every worker loads every variant; `--dist loadgroup` with one group per variant keeps
a variant on one worker, so 3 variants on 2 GPUs take 2/3 of the total time instead of 1/2 and on 8
GPUs 5 workers sit idle. This scheduler cuts the pending cases, in collection order (variant by
variant), into N contiguous slices (vlmbench.run.sharding.contiguous_slices) and makes each slice one
work unit of xdist's LoadScopeScheduling, which sends a whole unit to one worker; each worker thus
loads each of its variants once and the slices differ by at most one chunk. Finished cases (skipped
at once) form one extra unit. When a worker dies, LoadScopeScheduling gives the unfinished rest of
its slice to another worker (or to the worker xdist starts in its place).

It is used when xdist's distribution mode is the default `load`; an explicit `--dist MODE` keeps
xdist's own scheduler. Ids that are not vlmbench cases each form their own unit, as with `load`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from xdist.scheduler import LoadScopeScheduling

from vlmbench.run.sharding import case_from_nodeid, contiguous_slices

DONE_UNIT = "vlmbench: finished cases"


def plan_units(nodeids: Sequence[str], pending: Callable[[str, int], bool], workers: int) -> dict[str, str]:
    """nodeid -> work unit name: `slice <k>` for pending cases, DONE_UNIT for finished ones, the nodeid
    itself for anything else."""
    cases = [n for n in nodeids if case_from_nodeid(n) is not None and pending(*case_from_nodeid(n))]
    units = {n: n for n in nodeids}
    units.update({n: DONE_UNIT for n in nodeids if case_from_nodeid(n) is not None})
    for index, part in enumerate(contiguous_slices(cases, max(1, min(workers, len(cases))))):
        units.update({n: f"vlmbench: slice {index}" for n in part})
    return units


class SliceScheduling(LoadScopeScheduling):
    """LoadScopeScheduling whose scopes are the slices of `plan_units`.

    `pending(variant, chunk_id)` is asked once per case when scheduling starts (the controller's
    own check of the results folder, made after the workers collected and before any case runs).
    """

    def __init__(self, config, log=None, pending: Callable[[str, int], bool] = lambda v, c: True):
        super().__init__(config, log)
        self._pending = pending
        self._units: dict[str, str] = {}

    def schedule(self) -> None:
        if self.collection is None and self.registered_collections:
            nodeids = next(iter(self.registered_collections.values()))
            self._units = plan_units(nodeids, self._pending, len(self.nodes))
        super().schedule()

    def _split_scope(self, nodeid: str) -> str:
        return self._units.get(nodeid, nodeid)
