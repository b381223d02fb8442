"""finllm: the shared platform (config, storage, LLM gateway, reports, CLI)."""

__version__ = "0.1.0"
