"""report.html: the page a results folder ends with, its Pareto lines and gallery, opened in a real browser.

The folder is written by hand (tests/results_factory.py) and reported by the same `report()` the
session end and vlmbench-report call; the browser checks need Chromium (Debian: apt-get install
chromium) and skip with the reason where it is absent.
"""
import io
import re
import time
from html.parser import HTMLParser

import pytest

from tests.browser import Chromium, find_chromium
from tests.results_factory import tiny_config, write_results
from vlmbench.results import pareto
from vlmbench.results.gallery import word_diff
from vlmbench.scoring.metrics import cider_text

IMAGES = 12
INJECTED = '<script>alert(1)</script><img src="http://evil.example/x.png"> a red circle'


# ---------------------------------------------------------------- Pareto lines
def _entry(cider, throughput, **more):
    return {"cider": cider, "throughput_img_s": throughput, "latency_s_p50": None, "peak_vram_mib": None,
            "model_size_mb": None, "energy_j_per_image": None, "energy_j_per_image_null_reason": "no CUDA device",
            **more}


def test_pareto_front_keeps_undominated_variants_and_names_who_dominates():
    variants = {"fp16": _entry(6.0, 10.0), "int8": _entry(6.0, 5.0), "int4": _entry(5.0, 20.0),
                "twin": _entry(6.0, 10.0), "broken": _entry(None, 30.0, cider_null_reason="scoring failed")}
    front = pareto.front(variants, "throughput_img_s")
    assert front.optimal == ["fp16", "int4", "twin"]  # equal points dominate neither
    assert front.dominated == {"int8": "fp16"}
    assert front.left_out == {"broken": "cider is null: scoring failed"}
    line = pareto.sentence(front, variants)
    assert line.startswith("CIDEr-D against throughput: Pareto-optimal fp16 (CIDEr-D 6, 10 img/s), int4")
    assert "dominated: int8 (by fp16)" in line and "not compared: broken (cider is null: scoring failed)" in line


def test_a_cost_no_variant_measured_is_said_to_be_unmeasured():
    variants = {"fp16": _entry(6.0, 10.0), "int8": _entry(5.0, 12.0)}
    assert pareto.sentence(pareto.front(variants, "energy_j_per_image"), variants) == (
        "CIDEr-D against energy: unmeasured (no CUDA device)")
    lower_is_better = {"fp16": {**_entry(6.0, 1.0), "model_size_mb": 7.0},
                       "int8": {**_entry(6.0, 1.0), "model_size_mb": 4.0}}
    assert pareto.front(lower_is_better, "model_size_mb").optimal == ["int8"]


def test_word_diff_marks_words_added_changed_and_dropped():
    assert word_diff("a red circle on the left", "a blue circle on the left side") == [
        ("same", "a"), ("gone", "red"), ("new", "blue"), ("same", "circle on the left"), ("new", "side")]
    assert word_diff("two squares", "two squares") == [("same", "two squares")]


# ---------------------------------------------------------------- the page from a results folder
@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A reported folder: fp16, int8 (one caption an HTML injection) and int8_vit (one degenerate
    caption), with the generated sample's images on disk; returns (folder, page text, summary)."""
    from vlmbench.data.sample import ensure_synthetic_sample
    from vlmbench.results.report import report
    results = tmp_path_factory.mktemp("html") / "results"
    cfg = tiny_config(results, IMAGES, chunks=2, variants=("fp16", "int8", "int8_vit"))
    ensure_synthetic_sample(IMAGES, cfg.seed)
    write_results(cfg, results, image_cells={("int8", 2): {"caption": INJECTED},
                                             ("int8_vit", 3): {"caption": "!!!!!!!!"},
                                             ("int8", 5): {"caption": "a blue square drawn in red"}})
    summary, verdict = report(results, cfg, time.time(), None, tokenizer="ptb-python")  # no JVM start
    assert f"report: {results / 'report.html'}" in verdict.text
    return results, (results / "report.html").read_text(), summary


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attributes = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]


def test_the_page_is_self_contained_and_escapes_captions(reported):
    results, text, _ = reported
    parsed = Tags()
    parsed.feed(text)
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(parsed.tags)
    sources = [(tag, value) for tag, name, value in parsed.attributes if name in ("src", "href", "srcset", "action")]
    assert sources and all(value.startswith("data:") for _, value in sources), sources
    assert not [a for a in parsed.attributes if "http" in a[2]]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img" in text  # shown as text, never as markup
    assert set(re.findall(r"https?://[^\s&<]+", text)) == {"http://evil.example/x.png"}  # in that text alone
    assert "default-src 'none'" in text  # and a browser may not fetch anything from it anyway
    stamped = sorted(results.glob("report_*.html"))
    summaries = sorted(s for s in results.glob("summary_*.json") if s.name != "summary_latest.json")
    assert [p.name for p in stamped] == [s.name.replace("summary_", "report_").replace(".json", ".html")
                                         for s in summaries]
    assert stamped[-1].read_text() == text


def test_the_page_answers_which_variant(reported):
    _, text, summary = reported
    assert "Variants against fp16" in text and "(+0.0%)" in text  # throughput equal in every variant
    assert "CIDEr-D against throughput: Pareto-optimal fp16" in text
    assert "CIDEr-D against energy: unmeasured (no CUDA device (run on CPU))" in text
    assert "CIDEr-D against peak VRAM: unmeasured" in text
    ci = summary["variants"]["int8"]["cider_delta_ci"]
    assert f"{cider_text(ci['point'])} [{cider_text(ci['low'])}, {cider_text(ci['high'])}]" in text
    assert "regression gate not applied" in text and "nothing is checked" in text
    assert text.count('src="data:image/png;base64,') == len(summary["plots"]) > 3
    assert "python" in text and summary["config_fingerprint"] in text  # the environment


def test_cider_d_is_named_and_rounded_alike_in_the_terminal_and_the_page(reported):
    """Users read 'CIDEr' in the terminal and 'CIDEr-D' in report.html, rounded to 3 and 4 digits: the score is
    pycocoevalcap's CIDEr-D, so both name it so and show it with the same digits."""
    from vlmbench.results.report import markdown_table
    from vlmbench.scoring.quality import quality_table
    _, text, summary = reported
    terminal = markdown_table(summary) + quality_table(summary)
    assert "| CIDEr-D | latency p50 (s)" in terminal and "| CIDEr-D [95% CI] |" in terminal
    assert "<th>CIDEr-D</th>" in text and "<th>CIDEr-D [95% CI]</th>" in text
    assert not re.findall(r"CIDEr(?!-D)", terminal + text)
    scores = [entry["cider"] for entry in summary["variants"].values()]
    assert any(f"{s:.4g}" != cider_text(s) for s in scores)  # a score whose two roundings differ
    for name, entry in summary["variants"].items():
        shown, ci = cider_text(entry["cider"]), cider_text(entry["cider_ci"]["low"])
        assert f"| {name} | {shown} |" in terminal and re.search(f'<td class="num">{re.escape(shown)}[ <]', text)
        assert f"{shown} [{ci}, " in terminal and f"{shown} [{ci}, " in text


def test_power_is_labelled_as_the_average_over_the_timed_pass(reported):
    """'power (W)' read as a peak or an instant: the value is the energy over the timed pass over its seconds."""
    results, text, _ = reported
    terminal = (results / "summary_latest.md").read_text()  # the terminal table, as written beside the summary
    assert "| avg power (W) |" in terminal and "<th>avg power (W)</th>" in text
    assert not re.findall(r"(?<!avg )(?<!idle )power \(W\)", terminal + text)  # idle power: read before the pass


def test_the_na_lines_of_the_page_name_columns_not_json_keys(reported):
    results, text, _ = reported
    from html import unescape
    lines = [unescape(line) for line in re.findall(r"<li>n/a (.*?)</li>", text)]
    assert any(line.startswith("peak VRAM (MiB), energy (J/img), avg power (W), ") for line in lines), lines
    assert not [line for line in lines if re.search(r"\w_\w", line.split(": ")[0].split(" of ")[0])], lines
    terminal = (results / "summary_latest.md").read_text()
    first_table = terminal.split("Quality against")[0].splitlines()
    assert [f"n/a {line}" for line in lines] == [line for line in first_table if line.startswith("n/a ")]


def test_tokens_per_caption_is_the_mean_of_the_captioned_rows_generated_tokens(reported):
    """Each CSV row has its generated token count; the summary had no per-variant figure on show."""
    import csv
    import statistics
    from vlmbench.scoring.quality import quality_table
    results, text, summary = reported
    for name, entry in summary["variants"].items():
        rows = [r for path in results.glob(f"{name}_batch_*.csv") for r in csv.DictReader(path.read_text().splitlines())]
        expected = statistics.fmean(int(r["generated_tokens"]) for r in rows if r["status"] == "ok")
        assert entry["generated_tokens_mean"] == pytest.approx(expected)
    table, shown = quality_table(summary), f"{summary['variants']['int8']['generated_tokens_mean']:.3g}"
    assert "| at max_new_tokens (%) | tokens/caption | degenerate (kinds) |" in table
    assert f"| {shown} | 0/12 (" in table.split("| int8 |")[1].splitlines()[0]
    assert "<th>tokens/caption</th><th>degenerate captions</th>" in text
    assert f'<td class="num">{shown}</td><td class="num">0/12</td>' in text.split("<h2>Intervals")[1].split("<td>int8</td>")[1]


INT8_CENSUS = {"vision": {"linear": 12, "quantized": 12, "methods": {"bitsandbytes Linear8bitLt (int8)": 12}},
               "lm_head": {"linear": 1, "quantized": 0, "methods": {}}}


def test_the_page_shows_warm_up_and_census_as_the_terminal_does(reported):
    """report.html lacked the terminal table's warm-up seconds and quantized-layer census."""
    import copy
    from vlmbench.results.html import headline_section
    from vlmbench.results.report import markdown_table
    summary = copy.deepcopy(reported[2])
    summary["variants"]["int8"].update(warmup_s=0.3431751259995508, census=INT8_CENSUS)
    summary["variants"]["fp16"].update(warmup_s=None, warmup_s_null_reason="not recorded")
    page, terminal = headline_section(summary), markdown_table(summary)
    assert "<th>warm-up (s)</th><th>quantized Linear layers (method)</th></tr>" in page
    census = "vision:12/12 lm_head:0/1 (bitsandbytes Linear8bitLt (int8))"
    assert f"| 0.343 | {census} |" in terminal and "| n/a | n/a |" in terminal
    assert f'<td class="num">0.343</td><td>{census}</td></tr>' in page
    assert '<td class="num">n/a</td><td>n/a</td></tr>' in page  # fp16: neither recorded, as in the terminal


def test_the_gallery_shows_the_images_that_differ_most_first(reported):
    _, text, summary = reported
    cards = text.split('<div class="card">')[1:]
    first_ids = [card.split("<b>image ")[1].split("<")[0] for card in cards[:3]]
    assert set(first_ids) == {"2", "3", "5"}  # the three images whose captions were changed
    degenerate = next(card for card in cards if "<b>image 3</b>" in card)
    assert "degenerate: repeated, no_letter" in degenerate
    changed = next(card for card in cards if "<b>image 5</b>" in card)
    assert "<ins>blue square</ins>" in changed or "<ins>blue</ins>" in changed
    assert "<del>" in changed
    per_image = summary["variants"]["int8_vit"]["cider_per_image"]["3"]
    assert f">{cider_text(per_image)}<" in degenerate
    assert all("data:image/jpeg;base64," in card for card in cards)  # thumbnails of the sample on disk


def test_a_missing_or_broken_image_is_a_placeholder_with_its_reason(tmp_path, monkeypatch):
    from vlmbench.results.gallery import Caption, GalleryImage, image_reader, thumbnail_or_reason
    from vlmbench.results.html import gallery_card
    monkeypatch.setenv("VLMBENCH_CACHE", str(tmp_path / "empty-cache"))  # the generated sample is not there
    picture = thumbnail_or_reason(image_reader(tiny_config(tmp_path / "results", IMAGES)), 1)
    assert picture[0] is None and picture[1].startswith("the generated sample is not in the cache (")
    card = gallery_card(GalleryImage(1, "1.jpg", ["a ref"], {"fp16": Caption("a cap")}, 0.0, 0), "fp16", picture)
    assert '<div class="placeholder">no picture: the generated sample is not in the cache' in card
    broken = thumbnail_or_reason(lambda image_id: (b"not an image", ""), 1)
    assert broken[0] is None and broken[1].startswith("undecodable: UnidentifiedImageError")


# ---------------------------------------------------------------- in a real browser
@pytest.fixture(scope="module")
def chromium():
    binary = find_chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); the browser checks need it")
    browser = Chromium(binary)
    yield browser
    browser.close()


def _not_blank(png: bytes) -> float:
    from PIL import Image, ImageStat
    with Image.open(io.BytesIO(png)) as image:
        return ImageStat.Stat(image.convert("L")).stddev[0]


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_renders_in_chromium_without_errors_or_requests_at_desktop_and_phone_width(
        reported, chromium, width, tmp_path_factory):
    results, _, _ = reported
    url = (results / "report.html").as_uri()
    visit = chromium.visit(url, width)
    assert visit.problems == []
    assert [r for r in visit.requests if not r.startswith("data:")] == [url]
    assert visit.scroll_width <= width and visit.inner_width == width  # nothing wider than the screen, no zoom-out
    assert _not_blank(visit.screenshot) > 20
    (tmp_path_factory.getbasetemp() / f"report_{width}px.png").write_bytes(visit.screenshot)  # to look at


def test_the_browser_check_sees_a_request_and_an_overflow(chromium, tmp_path):
    """The checks above can fail: a page that asks for a URL and is wider than a phone is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<meta name=viewport content="width=device-width"><img src="http://127.0.0.1:9/x.png">'
                    '<p style="width:900px">wide</p>')
    visit = chromium.visit(page.as_uri(), 390)
    assert "http://127.0.0.1:9/x.png" in visit.requests and visit.scroll_width > 390  # a phone shows it zoomed out
    assert visit.problems  # the failed load is logged


def test_pareto_lines_say_what_a_cpu_run_and_an_unresolved_cider_change_leave_open(reported):
    """A fresh user read 'int8_vit dominates fp16 on throughput' from CPU timings and a CIDEr-D change whose
    interval included 0: the timing fronts carry the plots' stamp, and such variants are named."""
    import copy
    from vlmbench.results.html import pareto_section
    _, _, summary = reported
    cpu = copy.deepcopy(summary)
    for entry in cpu["variants"].values():
        entry["device_name"] = "cpu"
    name = next(n for n, e in cpu["variants"].items() if e.get("cider_delta_ci"))
    cpu["variants"][name]["cider_delta_ci"] = {"point": -0.1, "low": -0.3, "high": 0.1, "excludes_zero": False}
    section = pareto_section(cpu)
    lines = {item.split(":")[0]: item for item in re.findall(r"<li>(.*?)</li>", section)}
    assert lines["CIDEr-D against throughput"].endswith("(CPU timing: not a measurement)")
    assert lines["CIDEr-D against latency p50"].endswith("(CPU timing: not a measurement)")
    assert "CPU timing" not in lines["CIDEr-D against size on disk"]
    assert f"CIDEr-D of {name}" in section and "is not resolved" in section
    for entry in cpu["variants"].values():
        entry["device_name"] = "NVIDIA H200"
        if entry.get("cider_delta_ci"):
            entry["cider_delta_ci"]["excludes_zero"] = True
    assert "CPU timing" not in pareto_section(cpu) and "is not resolved" not in pareto_section(cpu)


def test_a_null_environment_field_says_why():
    """gpu_name and driver share gpu_null_reason; the page showed a bare 'n/a '."""
    from vlmbench.results.html import environment_section
    env = {"gpu_name": None, "driver": None, "gpu_null_reason": "no CUDA device (run on CPU)", "torch": "2.14"}
    section = environment_section({"environment": env, "variants": {}})
    assert section.count("n/a: no CUDA device (run on CPU)") == 2 and "gpu_null_reason" not in section


def test_the_gate_box_is_green_only_when_the_gate_passed():
    """Thresholds set but none decided is the outcome 'nothing checked': the box was green ('pass') for it."""
    from vlmbench.config import load_config
    from vlmbench.results.html import gate_section
    config = load_config(overrides={"thresholds": {"default": {"throughput_drop_pct": 5}}}).to_dict()
    gate = {"baseline": "base.json", "failed": False, "checks": 0, "outcome": "nothing checked"}
    section = gate_section({"config": config, "variants": {"fp16": {}}, "regression_gate": gate}, "nothing checked")
    assert "<pre class=none>" in section and "checks made: 0;" in section
    gate.update(checks=1, outcome="passed")
    assert "<pre class=pass>" in gate_section({"config": config, "variants": {"fp16": {}}, "regression_gate": gate}, "ok")


def test_the_gate_section_says_what_was_checked_and_what_failed():
    from vlmbench.config import load_config
    from vlmbench.results.html import gate_section
    config = load_config(overrides={"thresholds": {"default": {"cider_drop_abs": 0.1},
                                                   "per_variant": {"int8": {"latency_increase_pct": 50}}}}).to_dict()
    summary = {"config": config, "variants": {"fp16": {}, "int8": {}},
               "regression_gate": {"baseline": "base.json", "failed": True, "breaches": ["int8: latency_s_mean <b>"]}}
    section = gate_section(summary, "regression gate FAILED:\n  - int8: latency_s_mean <b>")
    assert "<pre class=fail>regression gate FAILED:" in section and "&lt;b&gt;" in section and "<b>" not in section
    assert "thresholds that apply (2):" in section
    assert "<li>fp16: cider_drop_abs 0.1</li><li>int8: latency_increase_pct 50</li>" in section
    assert "<li>breach: int8: latency_s_mean &lt;b&gt;</li>" in section


def test_caption_metrics_beyond_cider_are_shown_when_the_summary_has_them(reported):
    """From the summary's `metrics` section (vlmbench.scoring.caption_metrics: a value, its `_ci` and
    `_null_reason` keys), else a variant entry's own `metrics`; a metric null everywhere gets no column."""
    import copy
    from vlmbench.results.html import headline_section
    _, _, summary = reported
    bare = copy.deepcopy(summary)
    bare.pop("metrics", None)
    assert "BLEU-4" not in headline_section(bare)  # absent from the summary: no empty column
    richer = copy.deepcopy(bare)
    richer["metrics"] = {name: {"BLEU-4": 0.25 + k / 100, "BLEU-4_ci": {"point": 0.25, "low": 0.2, "high": 0.3},
                                "METEOR": 0.3, "CIDEr-D": 6.3, "SPICE": None, "SPICE_null_reason": "no jars"}
                         for k, name in enumerate(richer["variants"])}
    section = headline_section(richer)
    assert "<th>BLEU-4</th><th>METEOR</th>" in section and ">0.26<" in section and ">0.3<" in section
    assert "BLEU-4_ci" not in section and "SPICE" not in section and "<th>CIDEr-D</th><th>" not in section[
        section.index("<th>BLEU-4</th>"):]
    for k, entry in enumerate(bare["variants"].values()):  # the per-entry form, as older summaries may carry
        entry["metrics"] = {"BLEU-4": 0.25 + k / 100, "METEOR": {"point": 0.3, "low": 0.2, "high": 0.4}}
    assert "<th>BLEU-4</th><th>METEOR</th>" in headline_section(bare)


def test_a_page_that_cannot_be_built_or_written_is_a_line_not_an_exception(tmp_path, monkeypatch):
    from vlmbench.results.report import html_or_reason
    cfg = tiny_config(tmp_path, IMAGES)

    def fails_with(exc):
        def write(*args, **kwargs):
            raise exc
        return write
    monkeypatch.setattr("vlmbench.results.html.write_report_html", fails_with(RuntimeError("a bug in the page")))
    unwritten = []
    line = html_or_reason(tmp_path, {}, cfg, {}, "", None, None, unwritten)
    assert line == f"report: NOT WRITTEN (RuntimeError: a bug in the page); run vlmbench-report {tmp_path} to retry"
    assert unwritten == []  # the summary, table and plots stand; the verdict does not fail for the page
    monkeypatch.setattr("vlmbench.results.html.write_report_html", fails_with(OSError(28, "No space left on device")))
    assert html_or_reason(tmp_path, {}, cfg, {}, "", None, None, unwritten) == "report: NOT WRITTEN"
    assert unwritten == ["[Errno 28] No space left on device"]  # report() then fails the verdict and says so


def test_a_cider_difference_within_noise_is_a_tie_on_the_fronts():
    """A trial's 9-variant run: w8a8's one-caption +0.135 (interval [0, 0.40]) made it Pareto-optimal on latency
    over int8_vit, four times faster at the same CIDEr-D. Within noise, it is compared at fp16's CIDEr-D."""
    noise = {"point": 0.135, "low": 0.0, "high": 0.40, "excludes_zero": False, "baseline": "fp16"}
    variants = {"fp16": _entry(6.3, 10.0), "int8_vit": _entry(6.3, 12.0),
                "w8a8": _entry(6.435, 3.0, cider_delta_ci=noise)}
    front = pareto.front(variants, "throughput_img_s")
    assert front.optimal == ["int8_vit"] and set(front.dominated) == {"fp16", "w8a8"}
    resolved = {**noise, "low": 0.05, "excludes_zero": True}
    variants["w8a8"]["cider_delta_ci"] = resolved
    assert pareto.front(variants, "throughput_img_s").optimal == ["int8_vit", "w8a8"]
    variants["fp16"]["throughput_img_s"] = 1.0
    variants["w8a8"]["cider_delta_ci"] = noise
    line = pareto.sentence(pareto.front(variants, "throughput_img_s"), variants)
    assert "Pareto-optimal int8_vit (CIDEr-D 6.3, 12 img/s)" in line


def test_a_cider_change_within_noise_is_not_coloured_better():
    """A trial saw w8a8's +2.1% CIDEr-D in green while its interval included 0 and the fronts called it a tie."""
    from vlmbench.results.html import change_cell
    entry = {"delta_vs_fp16": {"cider": {"rel_pct": 2.1}},
             "cider_delta_ci": {"low": 0.0, "high": 0.4, "excludes_zero": False}}
    assert change_cell(entry, "cider", "fp16", True) == (
        '<span class="muted" title="the paired interval of the change includes 0">(+2.1%, within noise)</span>')
    entry["cider_delta_ci"]["excludes_zero"] = True
    assert change_cell(entry, "cider", "fp16", True) == '<span class="better">(+2.1%)</span>'
