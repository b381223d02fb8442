"""Use case: explain the top alerts of a scored batch (the fraud_pipeline's ``explain_top_alerts``, the
demo).

The detector's evidence is rendered by code; LLM phrasings are kept only where they pass the checks, and
the LLM verdict's note (reliability, agreement) is added (:func:`fraud.supervisor.explain.explain_alerts`).
Each explanation is written into its alert's ``explanation``; a re-run rewrites the same alerts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finllm.store.db import Store


def explain_top_alerts(model_id: str, *, batch: str, data: str, store: Store | None = None, top: int = 20) -> dict[str, Any]:
    """Explanations for the ``top`` highest-ranked alerts of (model, batch); returns counts (and, when no
    LLM endpoint could be used, why: the evidence is then explained without it)."""
    from finllm.llm import get_gateway
    from finllm.store.db import store_or_default
    from finllm.store.tables import Alert
    from fraud.artifacts import load_model
    from fraud.datasets import load_graph
    from fraud.supervisor.explain import explain_alerts, explanation_text

    store = store_or_default(store)
    alerts = store.alerts(model_id, batch)[:top]
    if not alerts or top <= 0:
        return {"model_id": model_id, "batch": batch, "explained": 0, "with_llm": 0}
    loaded = load_model(model_id, store)
    ds = load_graph(data)
    index = {nid: i for i, nid in enumerate(ds.node_ids)} if ds.node_ids else {}
    nodes = [index[a.node] if index else int(a.node) for a in alerts]
    try:
        gateway = get_gateway(store=store)
    except Exception as exc:  # noqa: BLE001 - no LLM endpoint: explain with attributions only, say so
        gateway, why = None, f"{type(exc).__name__}: {exc}"
    else:
        why = None
    explained = explain_alerts(loaded, ds, nodes, gateway=gateway, llm_budget=top if gateway else 0)
    with store.session() as s:
        for a, node in zip(alerts, nodes):
            s.get(Alert, a.id).explanation = explanation_text(explained[int(node)])
    out = {"model_id": model_id, "batch": batch, "explained": len(explained),
           "with_llm": sum("note" in (e.get("llm") or {}) for e in explained.values()),
           "llm_disagreements": sum((e.get("llm") or {}).get("shown_as") == "disagreement"
                                    for e in explained.values()),
           "llm_phrasings_kept": sum(s["source"] == "llm" for e in explained.values()
                                     for s in e["explanation"]["sentences"]),
           "llm_skipped": sum(bool(e.get("llm_skipped")) for e in explained.values())}
    if why:
        out["llm_unavailable"] = why[:300]
    return out
