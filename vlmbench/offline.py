"""One offline switch: `VLMBENCH_OFFLINE=1` (or `HF_HUB_OFFLINE=1`) means no network call anywhere.

Why it exists: images honoured VLMBENCH_OFFLINE, but the model identity, the processor, the weights
and the Hub parquet go through huggingface_hub, which knows only HF_HUB_OFFLINE; with VLMBENCH_OFFLINE
alone it tried the Hub for about 31 s (timeouts and retries) before the cache-only answer that
HF_HUB_OFFLINE gives at once. `local_files_only=True` alone is not enough: huggingface_hub 1.x also
fetches a registry for its user agent unless its `constants.HF_HUB_OFFLINE` is set. So:
- every Hub call of vlmbench runs inside `hub_calls()`, which sets that constant for the call when
  offline and yields the `local_files_only` value to pass;
- the entry points (the pytest plugin, vlmbench-report) call `apply_offline_switch()`, which sets
  HF_HUB_OFFLINE for the whole process, what it imports later and its subprocesses.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

SWITCHES = ("VLMBENCH_OFFLINE", "HF_HUB_OFFLINE")
TRUE_VALUES = ("1", "true", "yes", "on")  # huggingface_hub's own reading of HF_HUB_OFFLINE (constants._is_true)


def offline() -> bool:
    """True when either switch is set to a true value (1, true, yes, on; any case)."""
    return any(os.environ.get(name, "").strip().lower() in TRUE_VALUES for name in SWITCHES)


def apply_offline_switch() -> bool:
    """When offline, sets HF_HUB_OFFLINE=1 in the environment and in huggingface_hub (if already imported,
    it read the variable at import), so that transformers and huggingface_hub ask no server either.
    Returns offline()."""
    if not offline():
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    return True


@contextmanager
def hub_calls():
    """Yields `local_files_only` for the Hub calls inside: True when offline(), and then huggingface_hub's
    offline constant is True for the duration (restored after), so no library code asks a server."""
    if not offline():
        yield False
        return
    from huggingface_hub import constants
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield True
    finally:
        constants.HF_HUB_OFFLINE = before


OFFLINE_HINT = "offline (VLMBENCH_OFFLINE or HF_HUB_OFFLINE is set), so the Hub was not asked"
