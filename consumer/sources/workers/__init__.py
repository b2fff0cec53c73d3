"""Worker processes that decode and map records while the main process delivers: the process itself,
the typed messages between it and the main process, the pool of object readers of ``replay`` and the
message-batch worker of ``run``."""
