"""The wiring every command shares: destinations built from settings, the pipeline that acknowledges
positions, and the process set-up of long-running commands.
"""
