"""Maintenance cases, work orders, crews, SLA, notifications and the HTTP API for crews and citizens."""
