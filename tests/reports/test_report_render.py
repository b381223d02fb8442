"""HTML reports: built from real store rows, rendered in headless Chromium (screenshot not blank, every
image decodes), self-contained (no external resource), untrusted text escaped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from finllm.reports.html import build_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars"]
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);
  document.body.setAttribute('data-imgs', imgs.length);
  document.body.setAttribute('data-imgs-ok', ok.length);
});
</script></body>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; see scripts/system_deps.sh)")
    return exe


def _run(exe: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'chrome-profile'}", *args],
                          capture_output=True, text=True, timeout=90, check=False)


def check_in_chromium(html: Path, tmp: Path) -> dict:
    """Screenshot the report and count the images that decode (an injected probe script writes the
    counts onto <body>; --dump-dom prints the DOM after load)."""
    from PIL import Image

    exe = _chromium()
    shot = tmp / "shot.png"
    r = _run(exe, tmp, f"--screenshot={shot}", "--window-size=1280,2200", html.resolve().as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    img = Image.open(shot).convert("L")
    hist = img.histogram()
    non_white = 1 - hist[255] / sum(hist)
    colours = len(Image.open(shot).convert("RGB").getcolors(1 << 20) or [])
    probe = tmp / "probe.html"
    probe.write_text(html.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    r = _run(exe, tmp, "--dump-dom", "--virtual-time-budget=5000", probe.resolve().as_uri())
    m = re.search(r'data-imgs="(\d+)" data-imgs-ok="(\d+)"', r.stdout)
    assert m, f"probe did not run: {r.stdout[:300]} {r.stderr[-1000:]}"
    return {"non_white": non_white, "colours": colours, "imgs": int(m.group(1)), "imgs_ok": int(m.group(2))}


def _self_contained(text: str) -> None:
    assert 'data-unbacked-numbers="0"' in text  # every narrative sentence's numbers come from its cited facts
    srcs = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs), [s[:40] for s in srcs]


FACTOR_PANELS = {"IC over time", "Cumulative long-short", "Drawdown", "Excess return over the market", "IC distribution",
                 "IC QQ", "Monthly IC", "Quantile returns", "Quantile cumulative returns", "Quantile turnover", "Turnover over time",
                 "Rank autocorrelation", "IC decay", "Factor correlation", "ic vs baselines", "rank_ic vs baselines",
                 "sharpe vs baselines"}
FRAUD_PANELS = {"ROC", "PR", "Scores", "Threshold sweep", "Calibration"}


def _images(text: str) -> dict[str, "Image.Image"]:
    """alt -> decoded image of every embedded figure."""
    import base64
    import io

    from PIL import Image

    out = {}
    for uri, alt in re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"', text):
        out[alt] = Image.open(io.BytesIO(base64.b64decode(uri))).convert("L")
    return out


def _not_blank(images: dict) -> None:
    from PIL import ImageStat

    for alt, img in images.items():
        assert ImageStat.Stat(img).stddev[0] > 10, f"{alt}: blank image (pixel std {ImageStat.Stat(img).stddev[0]:.1f})"


def _cell(text: str, table_id: str, first_cells: tuple[str, ...], col: str) -> tuple[float, str]:
    """(data-value, shown text) of column ``col`` in the row of table ``table_id`` starting with ``first_cells``."""
    tbl = text[text.index(f'id="{table_id}"'):].split("</table>")[0]
    cols = re.findall(r"<th>([^<]*)</th>", tbl)
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", tbl, flags=re.S)[1:]:
        cells = re.findall(r'<td(?: class="[^"]*")?(?: data-value="([^"]*)")?>([^<]*)</td>', row)
        if tuple(c[1] for c in cells[:len(first_cells)]) == first_cells:
            value, shown = cells[cols.index(col)]
            return float(value), shown
    raise AssertionError(f"no row {first_cells} in {table_id}")


def test_factor_report_reads_a_stored_tearsheet_with_every_panel(store, factor_run, tmp_path):
    from factors.tearsheet import load_tearsheet
    from finllm.app.report import build_report as build_use_case
    from finllm.grounding.numbers import fmt_number
    from finllm.reports.tables import label

    res = build_use_case(store, factor_run, tmp_path / "factor.html", narrative=False)
    run = store.get_run(factor_run)
    sheet_path = Path(run.artifacts["tearsheet"])  # an older run without one: computed once and recorded
    assert sheet_path.is_file() and sheet_path.with_suffix(".npz").is_file()
    stamp = sheet_path.stat().st_mtime_ns
    text = Path(res["path"]).read_text(encoding="utf-8")
    _self_contained(text)
    for section in ("Factor pool (4 factors)", "Pool vs baselines (same run, same splits)", "alpha158_linear",
                    "lgbm_alpha158", "lgbm_alpha158_pool", "momentum_20d", "Mul(Delta($close, 5), -1)", "IC distribution",
                    "Quantiles",
                    "Signal persistence and decay", "How the pool and the baselines were fitted"):
        assert section in text, section
    # how the pool and the linear baseline were combined after train is shown
    fit_rows = text[text.index('id="fit-table"'):].split("</table>")[0]
    for model in ("pool", "alpha158_linear"):
        assert re.search(rf"<td>{model}</td>(<td[^>]*>[^<]*</td>){{2}}<td>(fitted|refit\w+)( \(auto\))?</td>",
                         fit_rows), fit_rows
    images = _images(text)
    assert FACTOR_PANELS <= set(images), FACTOR_PANELS - set(images)
    _not_blank(images)
    # one source: the table's number is the stored metric, shown by the one formatter
    for split, metric, kind in (("test", "ic", "ic"), ("valid", "rank_ic", "ic"), ("test", "sharpe", "ratio")):
        value, shown = _cell(text, "comparison-table", ("pool (combined)", split), label(metric))
        stored = run.metrics["pool"][split][metric]
        assert abs(value - stored) <= 1e-3 * abs(stored) and shown == fmt_number(stored, kind), (metric, value, stored)
    # the tear sheet's pool figures are the run's stored metrics (same scorer, same days), baselines beside it
    sheet = load_tearsheet(sheet_path)
    assert set(sheet["models"]) == {"pool", "alpha158_linear", "lgbm_alpha158", "lgbm_alpha158_pool"}
    for split in ("train", "valid", "test"):
        for metric in ("ic", "rank_ic", "sharpe", "turnover"):
            assert sheet["models"]["pool"]["splits"][split][metric] == pytest.approx(run.metrics["pool"][split][metric])
    member = sheet["members"][0]  # each member's own figures beside its formula and weight
    value, shown = _cell(text, "pool-table", ("1", "Mul(Delta($close, 5), -1)"), "test Sharpe")
    assert value == pytest.approx(member["figures"]["test"]["sharpe"]) and shown == fmt_number(value, "ratio")
    pool_rows = text[text.index('id="pool-table"'):].split("</table>")[0]  # a price change ranks by price scale
    assert re.search(r"<td[^>]*>Mul\(Delta\(\$close, 5\), -1\)</td>(<td[^>]*>[^<]*</td>){2}<td[^>]*>no</td>",
                     pool_rows), pool_rows
    assert not re.search(r"<td[^>]*>[^<]*\d[eE][+-]?\d", text)  # no exponent in any table cell
    # the new figures are facts a narrative may cite, with the same values as the tables
    flat = res["facts"]
    assert flat["alpha158_linear_test_ic"] == pytest.approx(sheet["models"]["alpha158_linear"]["splits"]["test"]["ic"],
                                                             rel=1e-3)
    assert "test_max_drawdown" in flat and "vs_lgbm_alpha158_test_sharpe" in flat and "test_excess_ann_return" in flat
    seen = check_in_chromium(out := Path(res["path"]), tmp_path)
    assert seen["imgs"] == len(re.findall("<img ", out.read_text())) >= len(FACTOR_PANELS)
    assert seen["imgs_ok"] == seen["imgs"]
    assert seen["non_white"] > 0.05 and seen["colours"] > 50
    build_use_case(store, factor_run, tmp_path / "again.html", narrative=False)  # reads it, computes nothing
    assert sheet_path.stat().st_mtime_ns == stamp


def test_fraud_report_renders_curves_and_escaped_alerts(store, fraud_run, tmp_path):
    out = build_report(fraud_run, store, tmp_path / "fraud.html")
    text = out.read_text(encoding="utf-8")
    _self_contained(text)
    assert FRAUD_PANELS <= set(re.findall(r'alt="([^"]+)"', text))
    assert "xgbgraph" in text and "0.9123" in text and "Top alerts (batch 2024-01-02: 12 scored" in text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "The bwgnn detector on amazon_upu.mat has a test AUROC of 0.9123" in text  # no narrative: by code
    assert "Deterministic summary written by code" in text
    seen = check_in_chromium(out, tmp_path)
    assert seen["imgs"] == len(FRAUD_PANELS) and seen["imgs_ok"] == len(FRAUD_PANELS)
    assert seen["non_white"] > 0.05 and seen["colours"] > 50


def test_fraud_report_says_which_seed_and_helps_pick_a_threshold(store, fraud_run_seeds, tmp_path):
    from finllm.grounding.numbers import fmt_number

    out = build_report(fraud_run_seeds, store, tmp_path / "seeds.html")
    text = out.read_text(encoding="utf-8")
    images = _images(text)
    assert FRAUD_PANELS <= set(images)
    _not_blank(images)
    run = store.get_run(fraud_run_seeds)
    # the metric table shows the mean of the stored per-seed values and says so; the per-seed table each seed
    value, shown = _cell(text, "metrics-table", ("hsign (mean of 2 seeds)", "test"), "AUROC")
    assert value == pytest.approx(sum(run.metrics["test"]["auroc"]) / 2, abs=1e-4) and shown == fmt_number(value, "score")
    value, shown = _cell(text, "seed-table", ("1 (kept)",), "test AUROC")
    assert value == run.metrics["per_seed"][1]["test"]["auroc"] and shown == "0.967"
    assert "seed 1, the kept one" in text  # the plots name the seed they show
    # confusion matrix at the stored threshold counts every labelled test node once
    z = np.load(run.artifacts["predictions"])
    test = (z["split"] == 2) & (z["y"] >= 0)
    tbl = text[text.index('id="confusion-table"'):].split("</table>")[0]
    totals = [int(v) for v in re.findall(r'<td class="num" data-value="(\d+)">[^<]*</td></tr>', tbl)]
    assert sum(totals) == int(test.sum())
    fp = _cell(text, "confusion-table", ("actual normal",), "predicted fraud")[0]
    assert fp == int(((z["score"] > 0.6123) & (z["y"] == 0) & test).sum())
    assert "xgbgraph (baseline) (AUROC 0.801)" not in text  # legends live in the images; the table carries it
    assert _cell(text, "metrics-table", ("xgbgraph", "test"), "AUROC")[0] == 0.8012
    assert "(chosen)" in text and "known label" in text and re.search(r"<td>(fraud|normal) \((train|valid|test)\)</td>", text)


def test_missing_artifacts_are_named_not_fatal(store, tmp_path):
    from finllm.app.report import build_report as build_use_case

    rid = store.start_run("fraud_train", {"dataset": "x"}, name="bare")
    store.finish_run(rid, metrics={"test": {"auroc": 0.7}}, artifacts={"predictions": str(tmp_path / "gone.npz")})
    text = build_report(rid, store, tmp_path / "bare.html").read_text()
    assert "No predictions artifact" in text and "No alerts scored" in text and "no summary stored" in text
    rid2 = store.start_run("factor_mine", {"data": str(tmp_path / "gone.parquet"), "train": "2011-01-01:2011-12-31",
                                           "valid": "2012-01-01:2012-12-31", "test": "2013-01-01:2013-12-31"})
    store.save_pool(rid2, [{"tokens": ["$close", "5", "Delta"], "formula": "Delta($close, 5)", "weight": 1.0}], "rl")
    store.finish_run(rid2, metrics={"pool": {"test": {"ic": 0.01}}})
    res = build_use_case(store, rid2, tmp_path / "f.html", narrative=False)
    text = Path(res["path"]).read_text()
    assert "tear sheet not available" in text and "gone.parquet" in text and "has no tear sheet" in text


def test_report_cli_writes_narrative_from_scripted_llm(store, fraud_run, tmp_path, scripted_llm, monkeypatch):
    # Scripted server: fixed sentences, one with an invented number and one with markup, to check the CLI path
    # end to end (the checks drop the invented one, HTML escapes the markup, the run stores the rest).
    from finllm.cli.main import app
    from finllm.grounding.check import unbacked_numbers

    sentences = [{"facts": ["test_auroc", "xgbgraph_test_auroc"], "text": "Test AUROC was {test_auroc} against "
                  "{xgbgraph_test_auroc} for xgbgraph."},
                 {"facts": ["alerts_count"], "text": "About 99% of the {alerts_count} alerts are real fraud."},
                 {"facts": ["test_auprc"], "text": "<script>alert('x')</script> The AUPRC was {test_auprc}."}]
    scripted_llm.script({"content": json.dumps({"sentences": sentences})})
    monkeypatch.setenv("FINLLM_DATABASE_URL", store.url)
    monkeypatch.setenv("FINLLM_LLM_BASE_URL", scripted_llm.url)
    monkeypatch.setenv("FINLLM_LLM_MODEL", "scripted")
    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["report", fraud_run, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    story = doc["narrative"]
    assert story["status"] == "generated" and story["source"] == "llm" and Path(doc["path"]) == out.resolve()
    assert [s["text"] for s in story["sentences"]] == ["Test AUROC was 0.9123 against 0.8311 for xgbgraph.",
                                                        "<script>alert('x')</script> The AUPRC was 0.5512."]
    assert story["sentences"][0]["facts"] == ["test_auroc", "xgbgraph_test_auroc"]
    assert doc["facts"]["test_auroc"] == 0.9123 and "test_use" in doc["facts"]
    assert unbacked_numbers(story["sentences"], doc["facts"]) == [] and story["unbacked_numbers"] == 0
    assert "99%" in story["dropped"][0]["reason"]
    html = out.read_text()
    assert "Test AUROC was 0.9123 against 0.8311 for xgbgraph." in html and "About 99%" not in html.split("<details")[0]
    assert "<script>alert(" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert json.loads(store.get_run(fraud_run).summary)["source"] == "llm"
    # a second report reuses the stored narrative without calling the LLM
    n = len(scripted_llm.requests)
    again = CliRunner().invoke(app, ["report", fraud_run, "--out", str(out)])
    assert again.exit_code == 0 and "narrative stored, by the LLM" in again.stdout
    assert len(scripted_llm.requests) == n
    bad = CliRunner().invoke(app, ["report", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "no such run" in bad.output


def test_factor_report_without_baselines_says_they_were_skipped(store, factor_run, tmp_path):
    from finllm.app.report import build_report as build_use_case

    res = build_use_case(store, factor_run, tmp_path / "quick.html", narrative=False, baselines=False)
    text = Path(res["path"]).read_text(encoding="utf-8")
    assert "baselines were skipped for this run (quick mode)" in text
    fit_rows = text[text.index('id="fit-table"'):].split("</table>")[0]
    assert "<td>pool</td>" in fit_rows and "alpha158" not in fit_rows  # only the pool's own fit is listed
    assert "lgbm_alpha158" not in text and "momentum_20d" in text  # the run's own baseline still beside the pool
    images = _images(text)
    assert FACTOR_PANELS <= set(images)
    _not_blank(images)
