"""The application layer: one function per use case (find runs, models and factors; export factor
values; ...). The CLI, the Airflow tasks and the demo call these; they parse arguments and print, nothing
more. Modules here may import the engines (``factors``, ``fraud``); the core (config, store, llm) never
imports this package."""
