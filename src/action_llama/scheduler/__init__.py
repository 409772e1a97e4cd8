"""The scheduler: which triggers start which runs, how many at once, and what waits.

core.py    Scheduler: dispatch (run now, queue, or refuse), scale, drains, reruns, pause
scale.py   per-agent runner counts under the project's cap
cron.py    CronLoop: fires each agent's schedule
"""
