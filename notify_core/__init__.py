"""Shared by every service: settings, Avro codec, Kafka clients, topics, records, logging, database."""
