// Replaced by the WAL implementation.
