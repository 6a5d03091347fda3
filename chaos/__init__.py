"""Chaos: the crawler's processes on real stores while faults of every kind land at random.

`python -m chaos` (or `make chaos`) runs the bounded scenario; `python -m chaos --long` the longer
one. A run starts a private `redis-server`, the embedded MongoDB stand-in, the fake Gmail with many
accounts and the fake token endpoint, then `crawler worker` and `crawler monitor` processes, and
injects faults from a seeded schedule. When the faults stop and the fleet has settled, it checks
the invariants (exactly-once storage against the sidecar ground truth, nothing left queued or in
flight, `crawl_status` as the faults imply, one session per account under the connection cap, no
command inside a throttle backoff) and prints a table of what happened.

Modules: `servers` (private redis-server processes, single or a 3-node cluster), `mail` (the
messages delivered and their ground truth), `standins.imapfront` (the hostile front of the fake
Gmail: resets, stalls, drips, floods), `deployment` (stand-ins, accounts and processes), `injector`
(one method per fault kind), `watcher` (what `crawl_status` went through), `logs` (the crawls the
workers logged), `checks` (the invariants), `report` (the tables), `runner` (scenarios and the run).
"""
