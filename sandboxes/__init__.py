"""Sandbox providers: loopback servers that speak the real APNs, FCM, SNS and SMTP protocols.

Used by tests, the demo and benchmarks instead of Apple, Google, AWS and an MTA. Each records what it
received (so tests count deliveries exactly) and can be told to fail, by target or for a time window,
with every error the real service documents. Services never import this package.
"""
