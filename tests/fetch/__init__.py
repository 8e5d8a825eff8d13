"""`ballast fetch` as a real process against a fake Hugging Face hub and plain HTTP on loopback."""
