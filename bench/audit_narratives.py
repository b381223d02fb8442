"""Audit every report narrative in a store: sentences whose numbers are not in their cited facts.

For each factor_mine / fraud_train run, the narrative a report shows (the stored LLM sentences rendered
from today's facts, or the deterministic summary) is checked with
:func:`finllm.grounding.check.unbacked_numbers`, the same audit anyone can run on `finllm report --json`.
Prints one row per run and the totals; exit code 1 if any sentence states an unbacked number.

    python bench/audit_narratives.py                       # the store of FINLLM_DATABASE_URL / FINLLM_HOME
    python bench/audit_narratives.py --db sqlite:///finllm_demo_home/finllm.db --json
"""

from __future__ import annotations

import argparse
import json
import sys

from finllm.reports.facts import build_facts, narrative_facts
from finllm.reports.html import REPORT_KINDS
from finllm.reports.summary import narrative_from_stored, parse_stored
from finllm.store import open_store


def audit(db: str | None) -> dict:
    store = open_store(db)
    rows = []
    for run in store.latest_runs(limit=10_000):
        if run.kind not in REPORT_KINDS:
            continue
        facts = narrative_facts(build_facts(run.id, store))
        story = narrative_from_stored(run.summary, facts, run.kind)
        stored = parse_stored(run.summary)
        rows.append({"run_id": run.id, "kind": run.kind, "source": story.source,
                     "llm_answered": stored is not None, "sentences": len(story.sentences),
                     "dropped": len(story.dropped), "unbacked": story.audit(facts)})
    total = {k: sum(r[k] for r in rows) for k in ("sentences", "dropped", "unbacked")}
    return {"runs": rows, "total": {"runs": len(rows), **total,
                                    "llm_sentences_shown": sum(r["sentences"] for r in rows if r["source"] == "llm")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=None, help="database URL (default: FINLLM_DATABASE_URL or FINLLM_HOME's sqlite)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    res = audit(args.db)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{'run':<36} {'kind':<12} {'source':<9} {'shown':>5} {'dropped':>7} {'unbacked':>8}")
        for r in res["runs"]:
            print(f"{r['run_id']:<36} {r['kind']:<12} {r['source']:<9} {r['sentences']:>5} {r['dropped']:>7} "
                  f"{r['unbacked']:>8}")
        t = res["total"]
        print(f"total: {t['runs']} runs, {t['sentences']} sentences shown ({t['llm_sentences_shown']} by the LLM), "
              f"{t['dropped']} LLM sentences dropped, {t['unbacked']} with an unbacked number")
    return 1 if res["total"]["unbacked"] else 0


if __name__ == "__main__":
    sys.exit(main())
