"""The `edge-llama` command."""
