"""The operators' commands behind ``python -m shiori``: ``launcher`` (run: the whole system on one machine),
``serve`` (one service in this process), ``provision`` (the broker's virtual host, users and permissions),
``deployment`` (each process's own secrets), ``calls`` (bootstrap, imports, retention and the access
record's checks, made as the operator against running services) and ``dead_letters`` (the events subscribers
failed to handle: list and replay them, on the broker as the operator). The services never import from here: they
use the kernel in ``shiori/`` alone."""
