"""A small shop that queues receipts (a sample project for pgqueue's pytest plugin)."""
