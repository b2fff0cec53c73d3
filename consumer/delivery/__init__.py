"""Delivery: the engine that batches, throttles per key as requests leave, sends concurrently and
applies the retry policy to each outcome (:mod:`.engine`), with the per-key limiter (:mod:`.throttle`)
and the held-back queues (:mod:`.holdback`).
"""
