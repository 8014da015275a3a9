"""Benchmarking: interleaved timing (``timing``), each candidate in a worker process of its own (``worker``),
steps and the matmul peak (``workloads``), how vitkit and peers prepare a model per mode (``recipes``), peak
memory in a subprocess (``memory``, ``child``), groups with ratios and MFU (``suite``) and the JSON / Markdown /
PNG output (``report``)."""
