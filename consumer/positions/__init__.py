"""Positions: what is done and may be committed (:mod:`.tracker`), the replay's resume state
(:mod:`.resume`) and the dead-letter output (:mod:`.deadletter`).
"""
