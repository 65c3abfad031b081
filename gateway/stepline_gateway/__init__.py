"""Stepline's event gateway: ingests events, routes them to functions, runs them step by step.

Layers, top to bottom: ``api`` (HTTP routes, with the ``dashboard`` pages and API token guard) and
``service`` (assembly) use ``ingest``, ``registry``, ``dispatcher`` and ``executor``; those use ``routing``,
``calls`` and ``store``; ``store`` alone speaks SQL.
"""
