"""Small shared helpers: atomic file writes, hashing, safetensors files, seeding, device and precision."""
