"""Streams the analytics topic (``<prefix>.events``) into date-partitioned Parquet, queried with DuckDB.

``columns`` maps the newest ``notification_event`` schema to Parquet columns, ``layout`` names the
files, ``batcher`` decides when a partition is flushed, ``manifest`` keeps a flush crash-safe,
``store`` writes to a directory or S3, and ``sink`` is the Kafka loop around them.
"""
