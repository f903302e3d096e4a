"""``make bench-peers``: this coordinator beside Celery, RQ and procrastinate, in one run.

``python -m bench.peers --help`` lists the options; ``docs/benchmarks.md`` ("Peers")
describes the protocol, the versions and the caveats.
"""
