"""What runs inside each system's own environment: its job body, producer and progress poll.

These modules import nothing from the project (the peers' venvs do not have it);
the bench puts this folder on ``PYTHONPATH`` and runs ``python -m <system>_app``.
"""
