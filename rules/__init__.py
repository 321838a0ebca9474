"""Rule definitions, detectors and evaluation over stored telemetry, producing findings."""
