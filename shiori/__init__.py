"""Shiori's shared plumbing (configuration, databases, domain errors, events, RPC with deadlines) and the
operators' commands (``python -m shiori``). Each service in ``services/`` owns its own data."""
