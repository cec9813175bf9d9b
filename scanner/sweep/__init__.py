"""Scheduled sweeps: every repository and log of an organisation, incrementally.

``config`` reads and checks the TOML file; ``mirrors`` keeps bare mirrors and the
per-repository scan state inside them; ``logs`` remembers how far each log file was read;
``run`` sweeps them all concurrently and feeds the incident trail (or a receiver).
"""
