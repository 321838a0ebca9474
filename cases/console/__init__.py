"""The operator console: the municipality's technical administration works its cases in a browser, inside
``lykta api`` (``/console``), with the same tenant-scoped authorisation as the API."""
