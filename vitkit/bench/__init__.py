"""Benchmarking: interleaved timing (``timing``), steps and the matmul peak (``workloads``), how vitkit and
peers prepare a model per mode (``recipes``), peak memory in a subprocess (``memory``), groups with ratios and
MFU (``suite``) and the JSON / Markdown / PNG output (``report``)."""
