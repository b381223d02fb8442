"""HTML reports: built from real store rows, rendered in headless Chromium (screenshot not blank, every
image decodes), self-contained (no external resource), untrusted text escaped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

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


def test_factor_report_renders_with_every_plot(store, factor_run, tmp_path):
    out = build_report(factor_run, store, tmp_path / "factor.html")
    text = out.read_text(encoding="utf-8")
    _self_contained(text)
    for section in ("Factor pool (4 factors)", "Performance over time", "Comparison with baselines", "momentum_20d",
                    "Mul(Delta($close, 5), -1)", "IC (recomputed)"):
        assert section in text, section
    alts = set(re.findall(r'<img src="data:[^"]+" alt="([^"]+)"', text))
    assert {"IC over time", "Cumulative long-short", "Quantile returns", "Factor correlation",
            "ic vs baselines", "rank_ic vs baselines"} <= alts
    # the recomputed series reproduce the stored pool metrics (same scorer, same panel)
    run = store.get_run(factor_run)
    stored_valid_ic = run.metrics["pool"]["valid"]["ic"]
    series_table = text[text.index('id="series-table"'):].split("</table>")[0]
    row = re.search(r"<td>valid</td><td class=\"num\">([^<]+)</td><td class=\"num\">([^<]+)</td>", series_table)
    assert row and row.group(1) == row.group(2) and abs(float(row.group(1)) - stored_valid_ic) < 1e-3 * max(1, abs(stored_valid_ic)) + 1e-6
    seen = check_in_chromium(out, tmp_path)
    assert seen["imgs"] == len(re.findall("<img ", text)) >= 6
    assert seen["imgs_ok"] == seen["imgs"]
    assert seen["non_white"] > 0.05 and seen["colours"] > 50


def test_fraud_report_renders_curves_and_escaped_alerts(store, fraud_run, tmp_path):
    out = build_report(fraud_run, store, tmp_path / "fraud.html")
    text = out.read_text(encoding="utf-8")
    _self_contained(text)
    assert {"ROC", "PR", "Scores"} <= set(re.findall(r'alt="([^"]+)"', text))
    assert "xgbgraph" in text and "0.9123" in text and "Top alerts (batch 2024-01-02: 12 scored" in text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "The bwgnn detector on amazon_upu.mat has a test AUROC of 0.9123" in text  # no narrative: by code
    assert "Deterministic summary written by code" in text
    seen = check_in_chromium(out, tmp_path)
    assert seen["imgs"] == 3 and seen["imgs_ok"] == 3
    assert seen["non_white"] > 0.05 and seen["colours"] > 50


def test_missing_artifacts_are_named_not_fatal(store, tmp_path):
    rid = store.start_run("fraud_train", {"dataset": "x"}, name="bare")
    store.finish_run(rid, metrics={"test": {"auroc": 0.7}}, artifacts={"predictions": str(tmp_path / "gone.npz")})
    text = build_report(rid, store, tmp_path / "bare.html").read_text()
    assert "No predictions artifact" in text and "No alerts scored" in text and "no summary stored" in text
    rid2 = store.start_run("factor_mine", {"data": str(tmp_path / "gone.parquet"), "train": "2011-01-01:2011-12-31",
                                           "valid": "2012-01-01:2012-12-31", "test": "2013-01-01:2013-12-31"})
    store.save_pool(rid2, [{"tokens": ["$close", "5", "Delta"], "formula": "Delta($close, 5)", "weight": 1.0}], "rl")
    store.finish_run(rid2, metrics={"pool": {"test": {"ic": 0.01}}})
    text = build_report(rid2, store, tmp_path / "f.html").read_text()
    assert "time-series plots not available" in text and "gone.parquet" in text


def test_report_cli_writes_narrative_from_scripted_llm(store, fraud_run, tmp_path, scripted_llm, monkeypatch):
    # Scripted server: fixed sentences, one with an invented number and one with markup, to check the CLI path
    # end to end (the checks drop the invented one, HTML escapes the markup, the run stores the rest).
    from finllm.cli.main import app
    from finllm.reports.grounding import unbacked_numbers

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
