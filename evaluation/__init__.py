"""The evaluation tool's parts, one job per module; ``evaluate.py`` composes them."""
