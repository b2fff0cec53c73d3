"""Sources: where Currents events come from, and the positions they carry.

The contract every source keeps is :mod:`.base`. Kafka (:mod:`.kafka`), files and object stores
(:mod:`.storage`), and the worker processes that decode and map records (:mod:`.workers`). Only this
package talks to aiokafka and fsspec.
"""
