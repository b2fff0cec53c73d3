"""The wiring every command shares: the one loop that reads any source (:mod:`.loop`), destinations
built from settings, the pipeline that acknowledges positions, the job's lock held for a run, and the
process set-up of long-running commands.
"""
