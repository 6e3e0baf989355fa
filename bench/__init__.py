"""`python -m bench`: how fast continual is next to a hand-written PyTorch loop (issue 7)."""
