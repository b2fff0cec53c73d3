"""The ``currents-consumer`` commands: ``run``, ``replay``, ``convert``, ``redrive``, ``config``, plus the
subcommands of installed plugins (:mod:`.plugins`). Wiring only: the work is done by the stages.
"""
