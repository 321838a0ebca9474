"""lykta core: configuration, the ``lykta`` command line and local service management."""

__version__ = "0.1.0"
