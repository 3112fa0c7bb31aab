"""Where results go beyond stdout: files that survive a crash (``jsonl``)."""
