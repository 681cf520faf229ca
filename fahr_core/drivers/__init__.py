"""fahr's built-in drivers. Each is registered through the ``fahr.drivers`` entry-point group,
exactly as a third-party driver is."""
