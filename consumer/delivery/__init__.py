"""Delivery: the engine's pump (:mod:`.engine`) takes events and sends requests concurrently; requests
are built by count, bytes and age (:mod:`.batching`), take per-key rate tokens as they leave
(:mod:`.departures`, with the limiter in :mod:`.throttle` and the held-back queues in :mod:`.holdback`),
and each outcome is handled by the retry policy (:mod:`.policy`); :mod:`.live` holds the events taken and
ends each one.
"""
