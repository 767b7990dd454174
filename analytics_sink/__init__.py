"""Streams the analytics topic (``<prefix>.events``) into date-partitioned Parquet, queried with DuckDB."""
