"""Small shared helpers: atomic file writes, seeding, device and precision resolution."""
