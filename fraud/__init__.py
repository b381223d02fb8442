"""fraud: graph fraud detection (GNNs, baselines, LLM supervisor, scoring)."""
