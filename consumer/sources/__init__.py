"""Sources: where Currents events come from, and the positions they carry.

Kafka (:mod:`.kafka`), files and object stores (:mod:`.store`, :mod:`.stores`, :mod:`.cloudstore`,
:mod:`.files`), bounded read-ahead (:mod:`.readahead`), worker processes (:mod:`.workers`) and the
selection of files and records (:mod:`.selection`). Only this package talks to aiokafka and fsspec.
"""
