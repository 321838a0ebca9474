"""MQTT subscription, payload decoding against the telemetry contract, batching, the write path, dead letters."""
