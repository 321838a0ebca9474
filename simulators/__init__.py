"""Virtual devices and fleets, fault injection, time acceleration and load generation."""
