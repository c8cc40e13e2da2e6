def error_lines(stderr: str) -> list[str]:
    """What the command printed to stderr besides progress logging ("Loading … …" lines at INFO)."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("Loading ")]
