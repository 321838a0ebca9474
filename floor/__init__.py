"""The floor of lykta: what every other package may import, and which imports nothing of lykta.

Errors, settings, durations and time formatting, logging, the sun, inventory file parsing, MQTT client login and
TLS, the MQTT wire codec and the skeleton of a long-running service. See docs/architecture.md.
"""
