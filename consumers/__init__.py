"""Kafka consumers: the router (``notify-router``) and one worker group per delivery channel.

Built in the router and channel-delivery issues; each process is a thin Kafka loop around pure logic
from ``notify_core``.
"""
