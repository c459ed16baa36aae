"""Images from the web, through an on-disk cache shared between runs.

Why it exists: the seed experiment names its images by `coco_url`. Downloading them must survive a
flaky network (timeouts on every request; retries with exponential backoff on connection errors,
429 and 5xx, honouring Retry-After), never leave a half-written file (temporary file, then rename),
and never trust a cached file blindly (only decodable downloads are stored, and a cached file that
fails to decode when read is fetched again: `vlmbench.data.images.load_image`).
requests + urllib3's Retry do the HTTP work.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import requests
from PIL import Image
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from vlmbench.offline import offline
from vlmbench.paths import atomic_write_bytes, cache_dir
from vlmbench.data.safenames import confined_path, safe_cache_name

RETRY_STATUS = (429, 500, 502, 503, 504)


class DownloadError(OSError):
    """An image could not be downloaded after all retries."""


def make_http_session(retries: int = 4, backoff_s: float = 0.5) -> requests.Session:
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff_s,
                  status_forcelist=RETRY_STATUS, allowed_methods=("GET", "HEAD"), respect_retry_after_header=True,
                  raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def is_decodable(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        return True
    except Exception:
        return False


class ImageCache:
    """URL -> bytes, stored under `root` by a hash of the URL (keeping the file's extension)."""

    def __init__(self, root: Path, timeout_s: float = 20.0, retries: int = 4, backoff_s: float = 0.5):
        self.root = Path(root)
        self.timeout_s = timeout_s
        self.http = make_http_session(retries, backoff_s)

    def path_for(self, url: str) -> Path:
        """root/<2 hex>/<16 hex of the URL's SHA-256>-<the URL's last path part, made safe>: whatever the
        URL holds ('..', slashes, NUL, 1000 characters), the file lies inside the cache folder."""
        digest = hashlib.sha256(url.encode()).hexdigest()
        name = safe_cache_name(urlparse(url).path.rsplit("/", 1)[-1])
        return confined_path(self.root, f"{digest[:2]}/{digest[:16]}-{name}")

    def has(self, url: str) -> bool:
        return self.path_for(url).is_file()

    def get(self, url: str) -> bytes:
        """Cached bytes, or a verified download stored in the cache. Cached bytes are not decoded here:
        the reader decodes them anyway and calls `refetch` when they turn out corrupt."""
        path = self.path_for(url)
        if path.is_file():
            return path.read_bytes()
        return self.refetch(url)

    def refetch(self, url: str) -> bytes:
        """Downloads again (replacing any cached copy); only a decodable image enters the cache."""
        data = self.download(url)
        if not is_decodable(data):
            raise DownloadError(f"downloaded file is not a decodable image: {url}")
        atomic_write_bytes(self.path_for(url), data)
        return data

    def download(self, url: str) -> bytes:
        if offline():
            raise DownloadError(f"offline (HF_HUB_OFFLINE/VLMBENCH_OFFLINE set) and not cached: {url}")
        try:
            response = self.http.get(url, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise DownloadError(f"download failed after retries: {url}: {exc}") from exc
        if response.status_code != 200:
            raise DownloadError(f"download failed: {url}: HTTP {response.status_code}")
        return response.content

    def prefetch(self, urls: list[str], workers: int = 8, progress: bool = True) -> dict[str, Optional[str]]:
        """Downloads many URLs in parallel; returns url -> error (None when cached fine)."""
        from concurrent.futures import ThreadPoolExecutor
        from tqdm import tqdm

        def one(url):
            try:
                self.get(url)
                return url, None
            except OSError as exc:
                return url, str(exc)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = dict(tqdm(pool.map(one, urls), total=len(urls), disable=not progress or len(urls) < 50,
                                desc="vlmbench images", unit="img"))
        return results


_CACHES: dict[str, ImageCache] = {}


def image_cache_for(cfg=None) -> ImageCache:
    """The shared cache of the configured folder (dataset.image_cache_dir, else $VLMBENCH_CACHE/images)."""
    configured = cfg.dataset.image_cache_dir if cfg is not None else None
    key = str(Path(configured) if configured else cache_dir("images"))
    if key not in _CACHES:
        _CACHES[key] = ImageCache(Path(key))
    return _CACHES[key]
