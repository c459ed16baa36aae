"""Real data sources over HTTP, offline: a loopback server plays the Hub and the COCO image host.

Covers: the Hub parquet download (pinned in the HF cache, works again with the server gone),
images from URLs through the cache (parallel prefetch, retries on 5xx/429, corrupt cache entries
fetched again), and the preflight's messages.
"""
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from vlmbench.config import ConfigError, load_config
from vlmbench.data.sources import load_rows
from vlmbench.data.fetch import DownloadError, ImageCache
from vlmbench.data.preflight import run_preflight

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SPLIT = "data/validation-00000-of-00001-e3c37e369512a3aa.parquet"


class Host(BaseHTTPRequestHandler):
    files: dict = {}          # path -> bytes
    failures: dict = {}       # path -> [status codes to answer first]
    hits: dict = {}

    def log_message(self, *args):
        pass

    def _answer(self, body: bool):
        path = self.path.split("?")[0]
        Host.hits[path] = Host.hits.get(path, 0) + 1
        queue = Host.failures.get(path, [])
        if queue:
            self.send_response(queue.pop(0))
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/datasets/") and "/resolve/" in path:
            path = "/hub/" + path.split("/resolve/", 1)[1].split("/", 1)[1]
        data = Host.files.get(path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)


@pytest.fixture
def server():
    Host.files, Host.failures, Host.hits = {}, {}, {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Host)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hub_files(coco_sample, tmp_path):
    """The derived phiyodr/coco2017 parquet, cut to the 64 images that exist here, and those images."""
    frame = pd.read_parquet(coco_sample / "phiyodr-coco2017-validation.derived.parquet")
    present = {p.name for p in (coco_sample / "val2017").iterdir()}
    frame = frame[frame.file_name.isin(present)].reset_index(drop=True)
    path = tmp_path / "split.parquet"
    frame.to_parquet(path)
    Host.files["/hub/" + SPLIT] = path.read_bytes()
    for name in present:
        Host.files["/val2017/" + name] = (coco_sample / "val2017" / name).read_bytes()
    return frame


def _hub_config(write_config, url, **dataset):
    return load_config(write_config({"dataset": {"synthetic_images": None, "hub_endpoint": url, "limit": 6,
                                                 "image_url_prefix": url, "download_workers": 4,
                                                 "image_cache_dir": dataset.pop("cache"), **dataset}}))


def test_hub_parquet_and_images_then_offline(server, hub_files, write_config, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf
    httpd, url = server
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))
    cfg = _hub_config(write_config, url, cache=str(tmp_path / "images"))
    rows = load_rows(cfg)
    assert [r.image_id for r in rows] == [int(i) for i in hub_files.image_id[:6]]
    assert rows[0].source == f"{url}/val2017/{rows[0].file_name}"
    notes = run_preflight(cfg, rows)
    assert "6 to download" in notes[0] and "downloaded 6 images" in notes[1]
    from vlmbench.data.hub import recorded_revision
    assert recorded_revision(cfg.dataset) == COMMIT

    httpd.shutdown()  # the network is gone: the cached parquet and images carry the second run
    monkeypatch.setenv("VLMBENCH_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    again = load_rows(cfg)
    assert again == rows
    assert "6 available, 0 to download, 0 missing" in run_preflight(cfg, again)[0]


def test_offline_without_cache_stops_with_a_clear_message(server, hub_files, write_config, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf
    _, url = server
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))
    cfg = _hub_config(write_config, url, cache=str(tmp_path / "images"))
    rows = load_rows(cfg)
    monkeypatch.setenv("VLMBENCH_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"6 of 6 images cannot be had .*offline and not in the image cache"):
        run_preflight(cfg, rows)
    allowed = _hub_config(write_config, url, cache=str(tmp_path / "images"), allow_missing_images=True)
    assert "recorded as failed" in run_preflight(allowed, rows)[-1]
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    other = _hub_config(write_config, url, cache=str(tmp_path / "images"), split_file="data/other.parquet")
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        load_rows(other)


@pytest.mark.parametrize("statuses", [[503, 503], [429], [502, 500, 504]])
def test_retries_on_server_errors(server, coco_sample, tmp_path, statuses):
    _, url = server
    Host.files["/img.jpg"] = (coco_sample / "val2017" / "000000000139.jpg").read_bytes()
    Host.failures["/img.jpg"] = list(statuses)
    cache = ImageCache(tmp_path, backoff_s=0.01)
    assert cache.get(f"{url}/img.jpg") == Host.files["/img.jpg"]
    assert Host.hits["/img.jpg"] == len(statuses) + 1


def test_gives_up_with_the_reason(server, tmp_path):
    _, url = server
    Host.failures["/down.jpg"] = [503] * 10
    with pytest.raises(DownloadError, match="HTTP 503|download failed"):
        ImageCache(tmp_path, retries=2, backoff_s=0.01).get(f"{url}/down.jpg")
    with pytest.raises(DownloadError, match="HTTP 404"):
        ImageCache(tmp_path, backoff_s=0.01).get(f"{url}/missing.jpg")
    with pytest.raises(DownloadError, match="download failed after retries"):
        ImageCache(tmp_path, retries=1, backoff_s=0.01, timeout_s=1).get("http://127.0.0.1:9/nothing.jpg")


def test_corrupt_cache_entry_is_fetched_again(server, coco_sample, tmp_path):
    from vlmbench.data.sources import ImageRow
    from vlmbench.data.images import load_image
    _, url = server
    Host.files["/img.jpg"] = (coco_sample / "val2017" / "000000000139.jpg").read_bytes()
    cache = ImageCache(tmp_path, backoff_s=0.01)
    row = ImageRow(139, "img.jpg", f"{url}/img.jpg", ())
    assert load_image(row, 56, cache).error is None
    path = cache.path_for(row.source)
    path.write_bytes(path.read_bytes()[:100])  # a torn earlier copy
    loaded = load_image(row, 56, cache)
    assert loaded.error is None and loaded.image.size == (56, 56)
    assert path.read_bytes() == Host.files["/img.jpg"]
    assert Host.hits["/img.jpg"] == 2
    assert not [p for p in Path(tmp_path).rglob("*.tmp")]


def test_a_download_that_does_not_decode_never_enters_the_cache(server, tmp_path):
    _, url = server
    Host.files["/html.jpg"] = b"<html>rate limited</html>"
    cache = ImageCache(tmp_path, backoff_s=0.01)
    with pytest.raises(DownloadError, match="not a decodable image"):
        cache.get(f"{url}/html.jpg")
    assert not cache.has(f"{url}/html.jpg")
