"""The fault-injection suite: workers killed, databases restarted, connections cut, races,
long steps, graceful stops, poisoned rows. Each test checks that nothing is lost and
records its figures (see support.Figures and scripts/reliability.py)."""
