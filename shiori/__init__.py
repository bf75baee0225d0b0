"""Shiori's kernel, what every service uses: configuration, databases and erasing stores, domain errors,
events, RPC with deadlines and signed contexts, the broker's exchanges, roles, the clock, TLS settings and
the shared vocabulary. The operators' commands (``python -m shiori``) live apart, in ``shiori.commands``.
Each service in ``services/`` owns its own data."""
