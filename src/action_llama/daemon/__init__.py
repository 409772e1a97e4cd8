"""`al start`: the scheduler, its cron loop and its gateway in one process.

backend.py   the gateway's view of the scheduler (GatewayBackend over Scheduler)
runner.py    launching a run (the one way): per-run secret, gateway URL, call bookkeeping
main.py      start-up, the serve loop, signals, bounded graceful shutdown
"""
