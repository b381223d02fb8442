"""The LLM supervisor of GNN fraud training (issue 7).

prompt   subgraph -> bounded text (features as percentiles, neighbourhood, GNN score, retrieved examples;
         only training labels, never the target's own)
verdict  the validated answer schema (FraudVerdict)
select   budgeted active query selection (uncertainty + contradiction with the neighbourhood)
trust    calibrated trust: reliability measured on held-out labelled nodes, 0 without signal
loop     round 1 -> select -> ask -> calibrate -> pseudo / noise / edges -> round 2 (train_supervised)
explain  features and neighbours driving a score, plus an LLM rationale (finllm fraud explain)
"""
