"""Transform: Currents records to each destination's payloads, pure and synchronous.

The contract is :class:`.base.Mapper`; Amplitude (:mod:`.amplitude`, with Braze's table in
:mod:`.amplitude_tables`), Movable Ink and Remerge implement it; :mod:`.prepare` runs every mapper on a
record into values that cross a process boundary cheaply.
"""
