"""Sinks: one attempt at a destination -> one typed outcome.

The contract and the outcomes are in :mod:`.base`; Amplitude's HTTP API (:mod:`.amplitude`) and the
webhook partners (:mod:`.webhook`) implement it. Only this package sends HTTP requests to destinations.
"""
