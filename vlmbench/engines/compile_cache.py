"""torch.compile's on-disk caches kept in vlmbench's cache folder, and whether a warm-up found them warm.

Why it exists: compiling the vision blocks and the decode step costs a first call of 16-60 s per
variant on an H200 (issue 20). Inductor's FX graph cache and AOTAutograd's cache (on by default since
torch 2.5 / 2.7) store compiled graphs, with their Triton kernels, under TORCHINDUCTOR_CACHE_DIR,
whose default lives in /tmp (`/tmp/torchinductor_<user>`), which machines clear. vlmbench points it at
`<vlmbench cache>/torch-compile` (VLMBENCH_CACHE, else ~/.cache/vlmbench; vlmbench.paths), unless the
user set TORCHINDUCTOR_CACHE_DIR to another folder, so the second run of an experiment loads instead of
compiling.
Dynamo still traces each graph in every process (a few seconds); only code generation is cached.

Whether the cache was warm is read, not assumed: torch counts cache hits and misses per process
(`torch._dynamo.utils.counters`, keys `inductor.fxgraph_cache_hit/miss` and
`aot_autograd.autograd_cache_hit/miss`), and `cache_state` turns the counts of one warm-up into
"warm", "cold", "partly warm" or "nothing compiled". On the tiny model's vision block (CPU, inductor):
a cold first run took 65 s to its first call, a second process on the same folder 9.7 s.

torch's mega-cache (`torch.compiler.save_cache_artifacts` / `load_cache_artifacts`) is not used: it
packs the same artefacts into one blob for another machine; on one machine the folder above holds them.
"""
from __future__ import annotations

import os

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
SUBFOLDER = "torch-compile"
COUNTERS = (("inductor", "fxgraph_cache_hit"), ("inductor", "fxgraph_cache_miss"),
            ("aot_autograd", "autograd_cache_hit"), ("aot_autograd", "autograd_cache_miss"))


def use_compile_cache() -> dict:
    """Points TORCHINDUCTOR_CACHE_DIR at vlmbench's cache unless it is set; returns what is used.

    Must run before the process's first compilation (inductor reads the variable when it first needs
    the folder). Returns {"dir": path, "dir_source": why this folder, "fx_graph_cache": bool,
    "autograd_cache": bool}.
    """
    from vlmbench.paths import cache_dir
    if chosen_by_user():
        source = f"{CACHE_ENV} set in the environment"
    else:
        os.environ[CACHE_ENV] = str(cache_dir(SUBFOLDER))
        source = "vlmbench cache (VLMBENCH_CACHE or ~/.cache/vlmbench)"
    import torch._inductor.config as inductor_config
    return {"dir": os.environ[CACHE_ENV], "dir_source": source,
            "fx_graph_cache": bool(inductor_config.fx_graph_cache),
            "autograd_cache": bool(getattr(inductor_config, "autograd_cache", False))}


def chosen_by_user() -> bool:
    """Whether TORCHINDUCTOR_CACHE_DIR names a folder other than torch's default.

    Importing bitsandbytes (0.50) already sets the variable to torch's default (`/tmp/torchinductor_<user>`,
    inductor's `cache_dir()` writes what it resolved back into the environment), so "set" alone does
    not mean that the user chose it.
    """
    value = os.environ.get(CACHE_ENV)
    if not value:
        return False
    return os.path.abspath(value) != os.path.abspath(torch_default_dir())


def torch_default_dir() -> str:
    """Inductor's default cache folder (`/tmp/torchinductor_<user>`), from torch where it says so."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # an older layout: the same rule, written out
        import getpass
        import tempfile
        return os.path.join(tempfile.gettempdir(), "torchinductor_" + getpass.getuser().replace("\\", "_"))
    return default_cache_dir()


def cache_counts() -> dict:
    """This process's compile-cache hits and misses so far, e.g. {"fxgraph_cache_hit": 2, ...} (0 if none),
    with dynamo's `graphs_compiled` (stats.unique_graphs) and `graph_breaks` (all reasons together)."""
    from torch._dynamo.utils import counters
    counts = {name: int(counters[group][name]) for group, name in COUNTERS}
    return {**counts, "graphs_compiled": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def cache_state(before: dict, after: dict) -> dict:
    """What the compilations between two `cache_counts` found: {"state": ..., <count>: delta, ...}.

    state, from inductor's FX graph cache (the generated code, the cost of a compilation): "warm" (hits
    only), "cold" (misses only), "partly warm" (both), "nothing compiled" (neither). AOTAutograd's
    counts are kept beside it but not used: on the tiny model a warm second run still counted one
    AOTAutograd miss next to its hit (a graph that cache does not store), while inductor only hit.
    """
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    hits, misses = delta.get("fxgraph_cache_hit", 0), delta.get("fxgraph_cache_miss", 0)
    states = {(True, False): "warm", (False, True): "cold", (True, True): "partly warm",
              (False, False): "nothing compiled"}
    return {"state": states[(hits > 0, misses > 0)], **delta}
