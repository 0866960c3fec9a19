"""Where the scale method's shards live besides this process (issue 21): executors that plug into
the one pass loop's seam (:class:`optimizer.solve.lagrangian.executor.ShardExecutor`).

:mod:`.dask_shards` keeps each shard resident on a Dask worker (``pip install -e ".[dask]"``).
The method never imports this package (``lint-imports`` checks it): the loop, the shards' side
and the in-process executor are :mod:`optimizer.solve.lagrangian`'s.
"""
