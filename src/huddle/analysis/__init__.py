"""Code intelligence that runs off the request path (SPEC F-15 … F-17, F-35).

Parsing and git run in background loops (runner.py) and land in indexed tables; the scoring
providers (service/code_signals.py) only read those tables inside the announce transaction.
"""
