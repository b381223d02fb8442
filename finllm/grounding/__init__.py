"""What an LLM may say, checked by code (core: imports no engine, no report, no CLI).

- :mod:`finllm.grounding.numbers`: the one number formatter (report tables, fact values, explanations).
- :mod:`finllm.grounding.facts`: a fact's value as people read it (``fmt_fact``).
- :mod:`finllm.grounding.check`: a cited sentence is kept only if every number, date, comparison and
  data-use claim in it is backed by the facts it cites.
- :mod:`finllm.grounding.cited`: the JSON schema of cited sentences and the salvage of a cut-off reply.

Report narratives (``finllm.reports``) and alert explanations (``fraud.supervisor.explain``) both use it.
"""
