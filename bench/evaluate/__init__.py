"""Evaluation: quality metrics on held-out crops, paired statistics, verdicts and summary tables."""
