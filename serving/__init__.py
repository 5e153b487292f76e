"""The policy server: the chosen policy on live arrangements, over HTTP, with a real database.

* :mod:`serving.settings`: one pydantic-settings class (``REGSIM_*`` environment variables).
* :mod:`serving.db`: the engine (SQLite in WAL mode, or PostgreSQL) and the tables; :mod:`serving.migrations`
  creates and upgrades them with Alembic.
* :mod:`serving.store`: reading and writing the store (events in the simulator's event-log schema, messages,
  idempotency keys, persisted policy state).
* :mod:`serving.service`: the decision service: store -> context (``regsim.replay``) -> rules -> policy ->
  commit, and events with status sync.
* :mod:`serving.app`: the FastAPI application factory; :mod:`serving.cli`: ``regsim serve`` and
  ``regsim export-log``.

The server never imports :mod:`experiments`; features, rules and policies come from ``regsim`` and ``agents``.
"""
