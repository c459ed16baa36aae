"""Hub files at a pinned revision: the dataset's parquet, and the commit of the model read.

Why it exists: `hf://datasets/<owner>/<name>/` + `split_file` is the seed's data address. The file
is fetched with huggingface_hub (which caches it and works with HF_HUB_OFFLINE=1 afterwards); the
commit it resolved to is returned so that the run records exactly which file it read. The model's
commit is resolved the same way (through its small config.json) before any weights load, so that
it can be part of the fingerprint and the weights can be loaded at exactly that commit.
"""
from __future__ import annotations

from pathlib import Path

from vlmbench.config import ConfigError, DatasetConfig
from vlmbench.offline import OFFLINE_HINT, hub_calls, offline

_RESOLVED: dict[tuple, str] = {}


def repo_id_of(prefix: str) -> str:
    """'hf://datasets/phiyodr/coco2017/' -> 'phiyodr/coco2017'."""
    parts = prefix.removeprefix("hf://datasets/").strip("/").split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise ConfigError(f"config key 'dataset.hf_parquet_prefix' has value {prefix!r}; expected "
                          "hf://datasets/<owner>/<name>/.")
    return "/".join(parts[:2])


def download_parquet(ds: DatasetConfig) -> Path:
    """The local path of the configured Hub parquet (downloaded on first use)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo_id = repo_id_of(ds.hf_parquet_prefix)
    try:
        with hub_calls() as local_only:
            path = Path(hf_hub_download(repo_id=repo_id, filename=ds.split_file, repo_type="dataset",
                                        revision=ds.revision, endpoint=ds.hub_endpoint, local_files_only=local_only))
    except (LocalEntryNotFoundError, OSError) as exc:
        if isinstance(exc, HfHubHTTPError):
            raise ConfigError(f"downloading {repo_id}/{ds.split_file} (revision {ds.revision or 'main'}) failed: "
                              f"{exc}. Check dataset.split_file and dataset.revision.") from exc
        raise ConfigError(f"the parquet {repo_id}/{ds.split_file} is not in the Hugging Face cache and "
                          f"{_unreachable(exc)}. Run once online, or set "
                          "dataset.parquet_path / dataset.coco_dir to local data.") from exc
    _RESOLVED[(repo_id, ds.split_file, ds.revision)] = resolved_revision(path)
    return path


def resolved_revision(path: Path) -> str:
    """The commit hash of a file in the HF cache layout (.../snapshots/<commit>/<file>)."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else "unknown"


def recorded_revision(ds: DatasetConfig):
    return _RESOLVED.get((repo_id_of(ds.hf_parquet_prefix), ds.split_file, ds.revision))


def resolve_model_commit(model_id: str, revision) -> str:
    """The commit hash `revision` (null: main) of the Hub model `model_id` points to; cache-only offline.

    Raises ConfigError, naming the fix, when the Hub cannot be reached and the model is not cached.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        with hub_calls() as local_only:
            path = Path(hf_hub_download(repo_id=model_id, filename="config.json", revision=revision,
                                        local_files_only=local_only))
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        if isinstance(exc, HfHubHTTPError):
            raise ConfigError(f"resolving model {model_id!r} at revision {revision or 'main'} failed: {exc}. Check "
                              "model_id and model.revision.") from exc
        raise ConfigError(f"model {model_id!r} (revision {revision or 'main'}) is not in the Hugging Face cache and "
                          f"{_unreachable(exc)}. Run once online, or set model_id to a local folder.") from exc
    return resolved_revision(path)


def _unreachable(exc: Exception) -> str:
    """Why the Hub gave no answer: the offline switch, or the error met reaching it."""
    return OFFLINE_HINT if offline() else f"the Hub cannot be reached ({type(exc).__name__})"
