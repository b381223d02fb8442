"""Settings from environment variables, optionally a TOML file.

Precedence: environment variable > TOML file (``$FINLLM_CONFIG`` or ``./finllm.toml``) > default.
Secrets (the LLM API key) are read from the environment only and never written anywhere.

``home`` is made absolute (against the working directory) when the settings are built, so every path
derived from it and written to the store is absolute and any folder can use it (:meth:`Settings.resolve`
reads the relative paths of older rows).

| setting          | env var                    | default                                  |
|------------------|----------------------------|------------------------------------------|
| home             | FINLLM_HOME                | ``./.finllm`` (runs, models, reports, db)|
|                  |                            | made absolute when the settings are built|
| database_url     | FINLLM_DATABASE_URL        | ``sqlite:///{home}/finllm.db``           |
| llm_base_url     | FINLLM_LLM_BASE_URL        | unset -> embedded local llama.cpp server |
| llm_model        | FINLLM_LLM_MODEL           | ``smollm2-135m-instruct``                |
| llm_api_key      | OPENAI_API_KEY             | unset (local server needs none)          |
| llm_timeout_s    | FINLLM_LLM_TIMEOUT_S       | 60                                       |
| llm_max_calls    | FINLLM_LLM_MAX_CALLS       | 500 per run                              |
| llm_max_tokens   | FINLLM_LLM_MAX_TOKENS      | 400000 per run                           |
| llm_concurrency  | FINLLM_LLM_CONCURRENCY     | 4                                        |
| llm_port         | FINLLM_LLM_PORT            | 8765 (embedded server, 127.0.0.1)        |
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from finllm.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".finllm")
    database_url: str = ""
    llm_base_url: str | None = None
    llm_model: str = "smollm2-135m-instruct"
    llm_api_key: str | None = field(default=None, repr=False)
    llm_timeout_s: float = 60.0
    llm_max_calls: int = 500
    llm_max_tokens: int = 400_000
    llm_concurrency: int = 4
    llm_port: int = 8765

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(os.path.abspath(Path(self.home).expanduser())))
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{Path(self.home) / 'finllm.db'}")

    def resolve(self, stored: str | os.PathLike) -> Path:
        """A path read from the store (an artifact, a model's weights, a run's data) as a usable path.

        Absolute paths are returned as they are. A relative one is looked up against the home (paths
        written relative to it), then as an old row's ``.finllm/...`` path (written relative to the folder
        the command ran in, when the default home was ``./.finllm``) against the home's parent, then
        against the working directory; the first that exists wins, else the home-relative path."""
        p = Path(stored).expanduser()
        if p.is_absolute():
            return p
        candidates = [self.home / p]
        if p.parts and p.parts[0] == self.home.name:
            candidates.append(self.home.parent / p)
        candidates.append(Path.cwd() / p)
        return next((c for c in candidates if c.exists()), candidates[0])

    def redacted(self) -> dict:
        """Settings as a dict safe to log or store (the API key is never included)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "llm_api_key"}
        out["home"] = str(out["home"])
        out["llm_api_key_set"] = self.llm_api_key is not None
        return out


_ENV = {
    "home": "FINLLM_HOME",
    "database_url": "FINLLM_DATABASE_URL",
    "llm_base_url": "FINLLM_LLM_BASE_URL",
    "llm_model": "FINLLM_LLM_MODEL",
    "llm_timeout_s": "FINLLM_LLM_TIMEOUT_S",
    "llm_max_calls": "FINLLM_LLM_MAX_CALLS",
    "llm_max_tokens": "FINLLM_LLM_MAX_TOKENS",
    "llm_concurrency": "FINLLM_LLM_CONCURRENCY",
    "llm_port": "FINLLM_LLM_PORT",
}


def _coerce(name: str, raw: object) -> object:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "int":
            return int(raw)  # type: ignore[arg-type]
        if kind == "float":
            return float(raw)  # type: ignore[arg-type]
        if kind == "Path":
            return Path(str(raw)).expanduser()
    except ValueError as exc:
        raise ConfigError(f"config: {name} must be a {kind}, got {raw!r}") from exc
    return str(raw)


def load_settings(config_file: str | os.PathLike | None = None) -> Settings:
    """Build Settings from env + optional TOML (section ``[finllm]`` or top level)."""
    values: dict[str, object] = {}
    path = Path(config_file or os.environ.get("FINLLM_CONFIG", "finllm.toml"))
    if path.is_file():
        try:
            doc = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        doc = doc.get("finllm", doc)
        for key, val in doc.items():
            if key not in _ENV:
                raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(_ENV))})")
            values[key] = _coerce(key, val)
    for key, var in _ENV.items():
        if os.environ.get(var):
            values[key] = _coerce(key, os.environ[var])
    if values.get("llm_base_url"):
        _check_endpoint(str(values["llm_base_url"]))
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        values["llm_api_key"] = key
    return Settings(**values)  # type: ignore[arg-type]


def _check_endpoint(url: str) -> None:
    """ConfigError naming FINLLM_LLM_BASE_URL when ``url`` is not an http(s) URL with a host (e.g. a
    bracket left open: ``http://[::1/v1``), instead of a failure deep inside the HTTP client."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port or an unclosed IPv6 bracket
    except ValueError as exc:
        raise ConfigError(f"FINLLM_LLM_BASE_URL {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"FINLLM_LLM_BASE_URL {url!r}: expected http(s)://host[:port]/v1")
    del port
