# The two commands of the README:
#   make demo   installs everything into ./.venv (pinned by requirements.lock) and runs `finllm demo`
#   make test   installs everything (plus PostgreSQL/Chromium if missing) and runs the whole test suite
.PHONY: demo test venv bench lock

venv:
	@bash scripts/bootstrap.sh

demo: venv
	.venv/bin/finllm demo

test: venv
	@bash scripts/system_deps.sh
	.venv/bin/python -m pytest -q

# Regenerate the lock after changing dependencies in pyproject.toml (run inside a working .venv).
lock:
	.venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' | grep -viE '^(torch[-_]sparse|torch[-_]scatter|ruff)==' > requirements.lock  # optional extras and dev tools stay out
