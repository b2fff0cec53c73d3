"""Positions: what is done and may be committed (:mod:`.tracker`), the replay's resume state
(:mod:`.resume`), a bucket follower's state (:mod:`.follow_state`, at work in :mod:`.follow`), where
states are kept with conditional writes (:mod:`.keeper`, :mod:`.kept`), the job lock (:mod:`.lock`) and
the dead-letter output (:mod:`.deadletter`).
"""
