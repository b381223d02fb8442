"""The LLM supervisor of GNN fraud training (issues 7 and 22).

prompt     subgraph -> bounded text (features as percentiles, neighbourhood, retrieved examples; only
           training labels, never the target's own; the supervisor leaves out the target's own score)
verdict    the validated answer schema (FraudVerdict)
select     budgeted active query selection (uncertainty + contradiction with the neighbourhood)
calibrate  what verdicts add beyond the detector's score, measured and decided sequentially
trust      verdict-alone reliability (AUROC with a lower bound) and camouflage-edge reliability
loop       round 1 -> calibrate (stop early when futile) -> ask -> soft labels / fusion / noise / edges -> round 2
simulated  a loopback endpoint of known quality (verdicts drawn from the true labels): not an LLM
sources    none | llm | simulated, as the CLI offers them
explain    features and neighbours driving a score, plus an LLM rationale (finllm fraud explain)
"""
