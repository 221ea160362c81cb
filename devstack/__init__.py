"""The embedded development and test stack: PostgreSQL and Tansu started from their wheels."""
