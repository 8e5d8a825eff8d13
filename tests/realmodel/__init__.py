"""The real-model tier: llama-server and a real model behind the operator and gateway."""
